//! The operator's error type. Every variant has a bounded metric label.

/// Why a reconcile or an operator command failed. All of these are transient from the
/// operator's point of view (retried with backoff); invalid specs are reported in status
/// instead and never reach the error policy.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error(transparent)]
    Store(#[from] prospector_store::StoreError),
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("cannot {step} the cleanup finalizer: {source}")]
    Finalizer { step: &'static str, source: kube::Error },
    #[error("the object has no {0}")]
    MissingField(&'static str),
    #[error("cannot encode an object: {0}")]
    Serialization(#[from] serde_json::Error),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("leader election: {0}")]
    Leadership(String),
}

/// The labels [`OperatorError::metric_label`] returns for the operator's own variants.
const OWN_ERROR_KINDS: [&str; 6] = ["kube", "finalizer", "missing_field", "serialization", "config", "leadership"];

/// Every label [`OperatorError::metric_label`] returns (the store's kinds included, once), so
/// the error counters can start at zero for each.
pub fn error_kinds() -> impl Iterator<Item = &'static str> {
    let store_only = prospector_store::STORE_ERROR_KINDS.into_iter().filter(|k| !OWN_ERROR_KINDS.contains(k));
    OWN_ERROR_KINDS.into_iter().chain(store_only)
}

impl OperatorError {
    /// A bounded label for the `errors_total` metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            OperatorError::Store(e) => e.metric_label(),
            OperatorError::Kube(_) => "kube",
            OperatorError::Finalizer { .. } => "finalizer",
            OperatorError::MissingField(_) => "missing_field",
            OperatorError::Serialization(_) => "serialization",
            OperatorError::Config(_) => "config",
            OperatorError::Leadership(_) => "leadership",
        }
    }
}

pub type Result<T, E = OperatorError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_kind_is_listed() {
        let errors = [
            OperatorError::MissingField("uid"),
            OperatorError::Config("x".into()),
            OperatorError::Leadership("x".into()),
            OperatorError::Serialization(serde_json::from_str::<u8>("x").unwrap_err()),
            OperatorError::Kube(kube::Error::LinesCodecMaxLineLengthExceeded),
        ];
        let kinds: Vec<&str> = error_kinds().collect();
        for error in &errors {
            assert!(kinds.contains(&error.metric_label()), "{}", error.metric_label());
        }
        for kind in prospector_store::STORE_ERROR_KINDS {
            assert!(kinds.contains(&kind), "{kind}");
        }
        assert!(kinds.contains(&"finalizer"));
    }
}
