//! A KnowledgeDocument's status, derived by a pure function from where its processing stands in
//! Postgres: phase, the stage conditions `Stored`, `Extracted`, `Embedded`, `Indexed`,
//! `IcpExtracted`, and `Ready`. A document is never silently stuck: a task waiting or running
//! past its threshold says so with its own reason.
//!
//! | facts                                   | phase      | Ready reason                          |
//! |-----------------------------------------|------------|---------------------------------------|
//! | customer not set up, not a customer ns  | Pending    | `InProgress` / `InvalidSpec`          |
//! | source missing or unusable              | Pending    | `SourceNotFound` / `SourceUnavailable` |
//! | quota refused                           | Pending    | `DocumentLimitReached` / `StorageLimitReached` |
//! | queued (past the threshold)             | Queued     | `Queued` (`QueuedTooLong`)            |
//! | queued again after a failed attempt     | Queued     | `Retrying`                            |
//! | a worker has it (past the threshold)    | Processing | `InProgress` (`ProcessingTooLong`)    |
//! | processed                               | Ready      | `Succeeded`                           |
//! | failed for good                         | Failed     | `Failed`                              |

use std::time::Duration;

use chrono::{DateTime, Utc};
use prospector_crds::conditions::{reasons, types};
use prospector_crds::{DocumentPhase, IcpCriteria, KnowledgeDocumentStatus};
use prospector_store::documents::{DocumentProgress, ProcessingStatus};

use super::{condition, timestamp};

/// How long a document may wait or run before its status says it is taking too long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    pub queued_too_long: Duration,
    pub processing_too_long: Duration,
}

/// Where the pipeline left a document.
#[derive(Clone, Debug, PartialEq)]
pub enum DocumentState {
    /// Stopped before its source was stored: `stored` says whether the Stored condition holds.
    Pending { reason: &'static str, message: String, stored: bool },
    /// Its row in Postgres says how far processing got.
    Tracked(Box<DocumentProgress>),
}

/// The condition reason of a failure, from the error kind its message names (the worker's
/// messages carry the kind's label in parentheses).
pub fn failure_reason(error: &str) -> &'static str {
    const KINDS: [(&str, &str); 20] = [
        ("(encrypted)", reasons::ENCRYPTED),
        ("(no_text_layer)", reasons::NO_TEXT_LAYER),
        ("(corrupt)", reasons::CORRUPT),
        ("(empty_text)", reasons::EMPTY_TEXT),
        ("(unsupported_type)", reasons::UNSUPPORTED_TYPE),
        ("(invalid_encoding)", reasons::UNSUPPORTED_TYPE),
        ("(input_too_large)", reasons::TOO_LARGE),
        ("(too_many_pages)", reasons::TOO_LARGE),
        ("(decompressed_too_large)", reasons::TOO_LARGE),
        ("(nesting_too_deep)", reasons::TOO_LARGE),
        ("(text_too_large)", reasons::TOO_LARGE),
        ("(timeout)", reasons::EXTRACTION_TIMEOUT),
        ("(parser_panicked)", reasons::PARSER_PANICKED),
        ("(url_not_allowed", reasons::URL_NOT_ALLOWED),
        ("(url_too_large", reasons::URL_TOO_LARGE),
        ("(url_refused", reasons::URL_REFUSED),
        ("(url_timed_out", reasons::URL_TIMED_OUT),
        ("(url_unreachable", reasons::URL_UNREACHABLE),
        ("(storage_limit_reached)", reasons::STORAGE_LIMIT_REACHED),
        ("lease expired", reasons::WORKER_LOST),
    ];
    if error.starts_with("embedding failed") {
        return reasons::EMBEDDING_FAILED;
    }
    KINDS.iter().find(|(label, _)| error.contains(label)).map_or(reasons::FAILED, |(_, reason)| reason)
}

/// The phase, the Ready condition's status, reason and message, and the error to show.
fn document_phase(
    progress: &DocumentProgress,
    now: DateTime<Utc>,
    thresholds: Thresholds,
) -> (DocumentPhase, &'static str, String) {
    let waited = |since: Option<DateTime<Utc>>| since.and_then(|s| (now - s).to_std().ok()).unwrap_or_default();
    match progress.processing_status {
        ProcessingStatus::Pending => (DocumentPhase::Pending, reasons::IN_PROGRESS, "waiting to be queued".into()),
        ProcessingStatus::Queued => {
            let waited = waited(progress.queued_since);
            if progress.attempts > 0 && progress.processing_error.is_some() {
                let error = progress.processing_error.clone().unwrap_or_default();
                (
                    DocumentPhase::Queued,
                    reasons::RETRYING,
                    format!("attempt {} failed, retrying: {error}", progress.attempts),
                )
            } else if waited >= thresholds.queued_too_long {
                let message = format!(
                    "queued for {}s, longer than {}s: are embedding workers running?",
                    waited.as_secs(),
                    thresholds.queued_too_long.as_secs()
                );
                (DocumentPhase::Queued, reasons::QUEUED_TOO_LONG, message)
            } else {
                (DocumentPhase::Queued, reasons::QUEUED, "waiting for an embedding worker".into())
            }
        }
        ProcessingStatus::Processing => {
            let waited = waited(progress.processing_since);
            if waited >= thresholds.processing_too_long {
                let message = format!(
                    "processing for {}s, longer than {}s (attempt {})",
                    waited.as_secs(),
                    thresholds.processing_too_long.as_secs(),
                    progress.attempts
                );
                (DocumentPhase::Processing, reasons::PROCESSING_TOO_LONG, message)
            } else {
                (DocumentPhase::Processing, reasons::IN_PROGRESS, format!("attempt {} running", progress.attempts))
            }
        }
        ProcessingStatus::Ready => {
            let message = format!("{} chunks searchable", progress.chunk_count.unwrap_or(0));
            (DocumentPhase::Ready, reasons::SUCCEEDED, message)
        }
        ProcessingStatus::Failed => {
            let error = progress.processing_error.clone().unwrap_or_else(|| "processing failed".into());
            (DocumentPhase::Failed, failure_reason(&error), error)
        }
    }
}

/// The status a document should carry. `current` is the status it carries now.
pub fn derive_status(
    current: Option<&KnowledgeDocumentStatus>,
    generation: Option<i64>,
    now: DateTime<Utc>,
    thresholds: Thresholds,
    state: &DocumentState,
) -> KnowledgeDocumentStatus {
    let previous = current.map(|s| s.conditions.as_slice()).unwrap_or_default();
    let stage = |type_: &str, ok: bool, reason: &str, message: String| {
        condition(previous, type_, ok, reason, message, generation, now)
    };
    let progress = match state {
        DocumentState::Pending { reason, message, stored } => {
            let stored = if *stored {
                stage(types::STORED, true, reasons::SUCCEEDED, "the source is stored".into())
            } else {
                stage(types::STORED, false, reason, message.clone())
            };
            return KnowledgeDocumentStatus {
                document_id: current.and_then(|s| s.document_id.clone()),
                phase: Some(DocumentPhase::Pending),
                observed_generation: generation,
                error: None,
                conditions: vec![stage(types::READY, false, reason, message.clone()), stored],
                ..Default::default()
            };
        }
        DocumentState::Tracked(progress) => progress,
    };
    let (phase, ready_reason, ready_message) = document_phase(progress, now, thresholds);
    let ready = phase == DocumentPhase::Ready;
    // The worker extracts, embeds, indexes and mines the ICP in one transaction: the stages
    // after Stored succeed together, and wait or fail with the document.
    let later = |type_: &str, done: String| {
        if ready {
            stage(type_, true, reasons::SUCCEEDED, done)
        } else {
            stage(type_, false, ready_reason, ready_message.clone())
        }
    };
    let chunks = progress.chunk_count.unwrap_or(0);
    let icp = ready.then(|| IcpCriteria {
        target_industries: progress.target_industries.0.clone(),
        company_sizes: progress.company_sizes.0.clone(),
        decision_makers: progress.decision_makers.0.clone(),
        target_regions: progress.target_regions.0.clone(),
        extracted_at: progress.icp_extracted_at.map(timestamp),
    });
    let icp_summary = icp.as_ref().map(|icp| {
        let found = icp.target_industries.len()
            + icp.company_sizes.len()
            + icp.decision_makers.len()
            + icp.target_regions.len();
        format!("{found} ICP criteria found")
    });
    let conditions = vec![
        stage(types::READY, ready, ready_reason, ready_message.clone()),
        if progress.stored {
            stage(types::STORED, true, reasons::SUCCEEDED, "the source is stored".into())
        } else if phase == DocumentPhase::Failed {
            stage(types::STORED, false, ready_reason, "the source was released after the failure".into())
        } else {
            stage(types::STORED, false, reasons::IN_PROGRESS, "the source is not stored yet".into())
        },
        later(types::EXTRACTED, format!("{} characters of text", progress.text_length.unwrap_or(0))),
        later(
            types::EMBEDDED,
            format!("{chunks} chunks embedded with {}", progress.embedding_model.as_deref().unwrap_or("the model")),
        ),
        later(types::INDEXED, format!("{chunks} chunks indexed")),
        later(types::ICP_EXTRACTED, icp_summary.unwrap_or_default()),
    ];
    let error = match phase {
        DocumentPhase::Failed => Some(ready_message),
        DocumentPhase::Queued => progress.processing_error.clone(),
        _ => None,
    };
    KnowledgeDocumentStatus {
        document_id: Some(progress.document_id.clone()),
        phase: Some(phase),
        text_length: if ready { progress.text_length.map(i64::from) } else { None },
        chunk_count: if ready { progress.chunk_count } else { None },
        embedding_model: if ready { progress.embedding_model.clone() } else { None },
        attempts: progress.attempts,
        icp,
        error,
        observed_generation: generation,
        conditions,
    }
}

/// Whether a document in `phase` should be looked at again soon: a worker's result also
/// arrives by NOTIFY, but the too-long reasons need a clock.
pub fn needs_progress_check(phase: DocumentPhase) -> bool {
    matches!(phase, DocumentPhase::Pending | DocumentPhase::Queued | DocumentPhase::Processing)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use prospector_crds::HasConditions;
    use sqlx::types::Json;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).unwrap()
    }

    const THRESHOLDS: Thresholds =
        Thresholds { queued_too_long: Duration::from_secs(600), processing_too_long: Duration::from_secs(900) };

    fn progress(status: ProcessingStatus) -> DocumentProgress {
        DocumentProgress {
            document_id: "doc_0123456789abcdef".into(),
            processing_status: status,
            processing_error: None,
            attempts: 0,
            quota_reserved: true,
            stored: true,
            text_length: Some(1200),
            chunk_count: Some(3),
            embedding_model: Some("all-MiniLM-L6-v2".into()),
            target_industries: Json(vec!["fintech".into()]),
            company_sizes: Json(vec![]),
            decision_makers: Json(vec!["CFO".into()]),
            target_regions: Json(vec!["Europe".into()]),
            icp_extracted_at: Some(now()),
            queued_since: None,
            processing_since: None,
        }
    }

    fn tracked(p: DocumentProgress) -> KnowledgeDocumentStatus {
        derive_status(None, Some(2), now(), THRESHOLDS, &DocumentState::Tracked(Box::new(p)))
    }

    fn ready_reason(status: &KnowledgeDocumentStatus) -> (bool, String) {
        let ready = status.condition(types::READY).unwrap();
        (ready.is_true(), ready.reason.clone())
    }

    #[test]
    fn each_processing_state_gives_its_phase_and_reason() {
        let minutes_ago = |m: i64| Some(now() - chrono::Duration::minutes(m));
        let mut queued = progress(ProcessingStatus::Queued);
        queued.queued_since = minutes_ago(1);
        let mut stuck_in_queue = queued.clone();
        stuck_in_queue.queued_since = minutes_ago(11);
        let mut retrying = queued.clone();
        retrying.attempts = 1;
        retrying.processing_error = Some("embedding failed (onnx): out of memory".into());
        let mut processing = progress(ProcessingStatus::Processing);
        processing.attempts = 1;
        processing.processing_since = minutes_ago(2);
        let mut slow = processing.clone();
        slow.processing_since = minutes_ago(16);
        let mut failed = progress(ProcessingStatus::Failed);
        failed.processing_error =
            Some("the PDF is encrypted and needs a password (encrypted): upload a decrypted copy".into());
        let table = [
            (progress(ProcessingStatus::Pending), DocumentPhase::Pending, reasons::IN_PROGRESS),
            (queued, DocumentPhase::Queued, reasons::QUEUED),
            (stuck_in_queue, DocumentPhase::Queued, reasons::QUEUED_TOO_LONG),
            (retrying, DocumentPhase::Queued, reasons::RETRYING),
            (processing, DocumentPhase::Processing, reasons::IN_PROGRESS),
            (slow, DocumentPhase::Processing, reasons::PROCESSING_TOO_LONG),
            (progress(ProcessingStatus::Ready), DocumentPhase::Ready, reasons::SUCCEEDED),
            (failed, DocumentPhase::Failed, reasons::ENCRYPTED),
        ];
        for (input, phase, reason) in table {
            let status = tracked(input.clone());
            assert_eq!(status.phase, Some(phase), "{input:?}");
            assert_eq!(ready_reason(&status), (phase == DocumentPhase::Ready, reason.to_owned()), "{input:?}");
            for stage in [types::EXTRACTED, types::EMBEDDED, types::INDEXED, types::ICP_EXTRACTED] {
                assert_eq!(
                    status.condition(stage).unwrap().is_true(),
                    phase == DocumentPhase::Ready,
                    "{stage} {input:?}"
                );
            }
            assert!(status.condition(types::STORED).unwrap().is_true());
        }
    }

    #[test]
    fn each_failure_kind_has_its_own_reason() {
        let table = [
            ("the PDF is encrypted and needs a password (encrypted): upload a decrypted copy", reasons::ENCRYPTED),
            (
                "the PDF has no text layer (1 pages of images only; scanned?) (no_text_layer): ...",
                reasons::NO_TEXT_LAYER,
            ),
            ("the PDF is corrupt: xref (corrupt): re-export", reasons::CORRUPT),
            ("http://x/ answered HTTP 404 Not Found (url_refused: fix the URL)", reasons::URL_REFUSED),
            ("x resolves only to private, ... (url_not_allowed: use a public ...)", reasons::URL_NOT_ALLOWED),
            ("http://x/ is larger than the limit of 10 bytes (url_too_large: upload ...)", reasons::URL_TOO_LARGE),
            ("fetching http://x/ took longer than 1s (url_timed_out: it will be retried)", reasons::URL_TIMED_OUT),
            ("http://x/ answered HTTP 503 (url_unreachable: it will be retried)", reasons::URL_UNREACHABLE),
            ("embedding failed (onnx): out of memory", reasons::EMBEDDING_FAILED),
            ("the worker processing it stopped answering (its lease expired)", reasons::WORKER_LOST),
            ("something else", reasons::FAILED),
        ];
        for (error, reason) in table {
            assert_eq!(failure_reason(error), reason, "{error}");
        }
    }

    #[test]
    fn a_ready_document_shows_its_counts_and_icp_and_a_failed_one_its_error() {
        let ready = tracked(progress(ProcessingStatus::Ready));
        assert_eq!((ready.chunk_count, ready.text_length), (Some(3), Some(1200)));
        let icp = ready.icp.unwrap();
        assert_eq!((icp.target_industries, icp.decision_makers), (vec!["fintech".to_owned()], vec!["CFO".to_owned()]));
        assert_eq!(icp.extracted_at.as_deref(), Some("2026-11-29T12:00:00Z"));
        assert_eq!(ready.document_id.as_deref(), Some("doc_0123456789abcdef"));

        let mut failing = progress(ProcessingStatus::Failed);
        failing.attempts = 3;
        failing.processing_error =
            Some("the PDF is encrypted and needs a password (encrypted): upload a decrypted copy".into());
        let failed = tracked(failing);
        assert!(failed.error.as_deref().unwrap().contains("upload a decrypted copy"));
        assert_eq!((failed.attempts, failed.chunk_count, failed.icp.is_none()), (3, None, true));
        assert!(failed.condition(types::EXTRACTED).unwrap().message.contains("(encrypted)"));
    }

    #[test]
    fn a_pending_document_says_why_and_keeps_its_id() {
        let ready = tracked(progress(ProcessingStatus::Ready));
        let state = DocumentState::Pending {
            reason: reasons::SOURCE_NOT_FOUND,
            message: "ConfigMap sales-playbook has no key playbook.md".into(),
            stored: false,
        };
        let pending = derive_status(Some(&ready), Some(3), now(), THRESHOLDS, &state);
        assert_eq!(pending.phase, Some(DocumentPhase::Pending));
        assert_eq!(ready_reason(&pending), (false, reasons::SOURCE_NOT_FOUND.to_owned()));
        let stored = pending.condition(types::STORED).unwrap();
        assert!(!stored.is_true() && stored.message.contains("playbook.md"));
        assert_eq!(pending.document_id.as_deref(), Some("doc_0123456789abcdef"));
    }

    #[test]
    fn only_unfinished_documents_are_polled_and_a_steady_state_compares_equal() {
        assert!(needs_progress_check(DocumentPhase::Queued) && needs_progress_check(DocumentPhase::Processing));
        assert!(!needs_progress_check(DocumentPhase::Ready) && !needs_progress_check(DocumentPhase::Failed));
        let first = tracked(progress(ProcessingStatus::Ready));
        let later = now() + chrono::Duration::minutes(30);
        let again = derive_status(
            Some(&first),
            Some(2),
            later,
            THRESHOLDS,
            &DocumentState::Tracked(Box::new(progress(ProcessingStatus::Ready))),
        );
        assert_eq!(again, first);
    }
}
