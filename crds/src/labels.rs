//! Label and annotation keys the operator puts on the objects it manages. Cross-namespace
//! children are found by these labels (owner references only work within a namespace).

/// The name of the Customer an object belongs to.
pub const CUSTOMER: &str = "prospector.dev/customer";
/// The integer id of the Customer an object belongs to.
pub const CUSTOMER_ID: &str = "prospector.dev/customer-id";
/// The name of the AgentDeployment an object belongs to.
pub const AGENT: &str = "prospector.dev/agent";
/// The name of the KnowledgeDocument an object belongs to.
pub const DOCUMENT: &str = "prospector.dev/document";
/// The tier a customer namespace was configured from.
pub const TIER: &str = "prospector.dev/tier";
/// Standard label: the tool managing an object.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY`].
pub const MANAGER: &str = "prospector-operator";
/// Annotation on a KnowledgeDocument created by a REST upload: the placeholder UID of the
/// document row that already holds its bytes and quota, for the operator to adopt.
pub const UPLOAD_RESERVATION: &str = "prospector.dev/upload-reservation";
/// Annotation on a Customer created by anonymous self-registration: the SHA-256 (hex) of the
/// token that reads the registration's status.
pub const REGISTRATION_TOKEN_SHA256: &str = "prospector.dev/registration-token-sha256";
/// The finalizer the operator's cleanup runs under. The REST server sets it on the documents it
/// creates, so one deleted before the operator first saw it is still cleaned up.
pub const CLEANUP_FINALIZER: &str = "prospector.dev/cleanup";
