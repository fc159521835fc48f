//! The condition vocabulary: every condition type and reason the operator writes. They are
//! constants so that the operator, the REST server and tests agree on the exact strings.

/// Condition types.
pub mod types {
    /// The object is fully reconciled and usable.
    pub const READY: &str = "Ready";
    /// A customer or agent is over one of its tier's limits.
    pub const QUOTA_EXCEEDED: &str = "QuotaExceeded";
    /// A customer is suspended (`spec.suspended`), so its agents are scaled to zero.
    pub const SUSPENDED: &str = "Suspended";
    /// The customer's spend this month reached its cost cap; agents are scaled to zero.
    pub const COST_CAP_EXCEEDED: &str = "CostCapExceeded";
    /// A document's bytes are stored (blob, URL fetch, ConfigMap or inline text).
    pub const STORED: &str = "Stored";
    /// Text was extracted from a document.
    pub const EXTRACTED: &str = "Extracted";
    /// A document's chunks were embedded.
    pub const EMBEDDED: &str = "Embedded";
    /// A document's chunks and vectors are searchable.
    pub const INDEXED: &str = "Indexed";
    /// ICP criteria were extracted from a document.
    pub const ICP_EXTRACTED: &str = "IcpExtracted";
}

/// Condition reasons (PascalCase, as Kubernetes requires).
pub mod reasons {
    /// Everything the condition covers is in place.
    pub const RECONCILED: &str = "Reconciled";
    /// Work is under way; the condition will change without user action.
    pub const IN_PROGRESS: &str = "InProgress";
    /// The Tier a Customer names does not exist.
    pub const TIER_NOT_FOUND: &str = "TierNotFound";
    /// The spec is invalid in a way the schema cannot express.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// An agent cannot be admitted: the customer has its maximum number of agents.
    pub const AGENT_LIMIT_REACHED: &str = "AgentLimitReached";
    /// An agent cannot be admitted: its replicas would exceed the concurrent-agent limit.
    pub const CONCURRENCY_LIMIT_REACHED: &str = "ConcurrencyLimitReached";
    /// A document cannot be admitted: the customer has its maximum number of documents.
    pub const DOCUMENT_LIMIT_REACHED: &str = "DocumentLimitReached";
    /// A document cannot be admitted: it would exceed the storage limit.
    pub const STORAGE_LIMIT_REACHED: &str = "StorageLimitReached";
    /// The monthly cost cap is reached.
    pub const COST_CAP_REACHED: &str = "CostCapReached";
    /// Something the customer asked for was refused: agents wait for quota (the message says
    /// how many, and which limits are full).
    pub const AGENTS_WAITING: &str = "AgentsWaiting";
    /// Within every limit.
    pub const WITHIN_LIMITS: &str = "WithinLimits";
    /// Suspended by `spec.suspended`.
    pub const SUSPENDED_BY_SPEC: &str = "SuspendedBySpec";
    /// Not suspended.
    pub const ACTIVE: &str = "Active";
    /// A stage of a document's processing finished.
    pub const SUCCEEDED: &str = "Succeeded";
    /// A document waits in the embedding queue.
    pub const QUEUED: &str = "Queued";
    /// A document's source (ConfigMap, key, blob) does not exist yet.
    pub const SOURCE_NOT_FOUND: &str = "SourceNotFound";
    /// A document's source cannot be used: too large, or a URL that is refused or fails.
    pub const SOURCE_UNAVAILABLE: &str = "SourceUnavailable";
    /// A document waits in the embedding queue longer than expected.
    pub const QUEUED_TOO_LONG: &str = "QueuedTooLong";
    /// A document has been processing longer than expected.
    pub const PROCESSING_TOO_LONG: &str = "ProcessingTooLong";
    /// A processing step failed and will be retried with backoff.
    pub const RETRYING: &str = "Retrying";
    /// A processing step failed for good; the message says what to do. The kinds below name
    /// the cause where it is known.
    pub const FAILED: &str = "Failed";
    /// The PDF is encrypted.
    pub const ENCRYPTED: &str = "Encrypted";
    /// The PDF has only images, no text layer.
    pub const NO_TEXT_LAYER: &str = "NoTextLayer";
    /// The file is damaged.
    pub const CORRUPT: &str = "Corrupt";
    /// The document contains no text.
    pub const EMPTY_TEXT: &str = "EmptyText";
    /// The type is not one Prospector reads, or the text is not UTF-8.
    pub const UNSUPPORTED_TYPE: &str = "UnsupportedType";
    /// The document passes a size bound (bytes, pages, decompressed size, nesting, text).
    pub const TOO_LARGE: &str = "TooLarge";
    /// Extraction took longer than its limit, on every attempt.
    pub const EXTRACTION_TIMEOUT: &str = "ExtractionTimeout";
    /// A parser bug stopped extraction.
    pub const PARSER_PANICKED: &str = "ParserPanicked";
    /// The url is one the fetch policy forbids (not http(s), an internal address, a port other
    /// than 80 and 443).
    pub const URL_NOT_ALLOWED: &str = "UrlNotAllowed";
    /// The url's body is larger than the size cap.
    pub const URL_TOO_LARGE: &str = "UrlTooLarge";
    /// The url was refused (invalid, a 4xx answer, too many redirects).
    pub const URL_REFUSED: &str = "UrlRefused";
    /// The url did not answer within the time limit on any attempt.
    pub const URL_TIMED_OUT: &str = "UrlTimedOut";
    /// The url could not be fetched on any attempt (connection errors, 5xx, 408, 429).
    pub const URL_UNREACHABLE: &str = "UrlUnreachable";
    /// Embedding failed on every attempt.
    pub const EMBEDDING_FAILED: &str = "EmbeddingFailed";
    /// The worker processing the document stopped answering on the last attempt.
    pub const WORKER_LOST: &str = "WorkerLost";
    /// The agent's pods are available.
    pub const REPLICAS_AVAILABLE: &str = "ReplicasAvailable";
    /// The agent's pods are not yet available.
    pub const REPLICAS_UNAVAILABLE: &str = "ReplicasUnavailable";
    /// The agent asks for `replicas: 0`: it keeps its agent slot and runs no pods.
    pub const SCALED_TO_ZERO: &str = "ScaledToZero";
    /// The object is being deleted; its cleanup has not finished.
    pub const TERMINATING: &str = "Terminating";
    /// The agent's image cannot be pulled (ErrImagePull, ImagePullBackOff, InvalidImageName).
    pub const IMAGE_PULL_FAILED: &str = "ImagePullFailed";
    /// The agent's container keeps crashing (CrashLoopBackOff, RunContainerError).
    pub const CRASH_LOOPING: &str = "CrashLooping";
    /// The agent's container cannot be created from its spec (CreateContainerConfigError,
    /// CreateContainerError).
    pub const CONTAINER_CONFIG_INVALID: &str = "ContainerConfigInvalid";
    /// The agent's pods found no node for longer than the operator's bound.
    pub const UNSCHEDULABLE: &str = "Unschedulable";
    /// The agent's pods cannot be created (Deployment condition ReplicaFailure, e.g. the
    /// namespace's ResourceQuota refuses them).
    pub const POD_CREATION_FAILED: &str = "PodCreationFailed";
    /// The agent's Deployment made no progress within its progress deadline.
    pub const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";
}

/// Condition statuses.
pub mod status {
    pub const TRUE: &str = "True";
    pub const FALSE: &str = "False";
    pub const UNKNOWN: &str = "Unknown";
}
