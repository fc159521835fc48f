//! The operator's error type.

/// Why an operator action failed.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error(transparent)]
    Store(#[from] prospector_store::StoreError),
}

impl OperatorError {
    /// A bounded label for the `errors_total` metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            OperatorError::Store(e) => e.metric_label(),
        }
    }
}
