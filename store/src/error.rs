//! The store's error type.

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or the statement failed; usually transient.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The database did not answer in time.
    #[error("the database did not answer in time")]
    Timeout,
    /// Another live customer already uses this e-mail address.
    #[error("another customer already uses this e-mail address")]
    EmailInUse,
    /// The row was deleted (soft or hard) while the caller still worked on it.
    #[error("the row was deleted")]
    Gone,
    /// The connection settings are missing or malformed.
    #[error("database configuration: {0}")]
    Config(String),
    /// A migration could not be applied.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Every label [`StoreError::metric_label`] returns.
pub const STORE_ERROR_KINDS: [&str; 6] = ["database", "email_in_use", "timeout", "gone", "migrate", "config"];

impl StoreError {
    /// A bounded label for the `errors_total` metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            StoreError::Database(_) => "database",
            StoreError::EmailInUse => "email_in_use",
            StoreError::Timeout => "timeout",
            StoreError::Gone => "gone",
            StoreError::Migrate(_) => "migrate",
            StoreError::Config(_) => "config",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_label_is_listed() {
        for error in [StoreError::EmailInUse, StoreError::Timeout, StoreError::Gone, StoreError::Config("x".into())] {
            assert!(STORE_ERROR_KINDS.contains(&error.metric_label()), "{}", error.metric_label());
        }
    }
}
