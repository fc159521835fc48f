//! A customer's aggregate Ideal Customer Profile: the ICP labels of its Ready documents, each
//! weighted by the confidence the extractor gave it, summed over documents. A label one document
//! mentions with high confidence, or several mention, is in; a single weak similarity match is
//! not. Pure functions; the inputs are the documents' stored ICP results (`icp_data`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use prospector_crds::IcpCriteria;
use serde::Serialize;

use crate::status::timestamp;

/// The summed confidence a label needs to be in the customer's ICP.
pub const MIN_WEIGHT: f64 = 0.6;
/// The most labels kept per field, strongest first.
pub const MAX_LABELS: usize = 8;

/// The four ICP fields, as the extractor's result names them.
const FIELDS: [&str; 4] = ["target_industries", "company_sizes", "decision_makers", "target_regions"];

/// The strongest labels of one field over all documents.
fn field_labels(documents: &[serde_json::Value], field: &str) -> Vec<String> {
    let mut weights: BTreeMap<String, f64> = BTreeMap::new();
    for document in documents {
        // Per document, a label counts once, with its best confidence.
        let mut best: BTreeMap<&str, f64> = BTreeMap::new();
        for label in document.get(field).and_then(|v| v.as_array()).into_iter().flatten() {
            let (Some(name), Some(confidence)) =
                (label.get("label").and_then(|l| l.as_str()), label.get("confidence").and_then(|c| c.as_f64()))
            else {
                continue;
            };
            let entry = best.entry(name).or_default();
            *entry = entry.max(confidence.clamp(0.0, 1.0));
        }
        for (name, confidence) in best {
            *weights.entry(name.to_owned()).or_default() += confidence;
        }
    }
    let mut ranked: Vec<(String, f64)> = weights.into_iter().filter(|(_, w)| *w >= MIN_WEIGHT).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    ranked.into_iter().take(MAX_LABELS).map(|(name, _)| name).collect()
}

/// The customer's ICP from its Ready documents' ICP results and extraction times; `None` when
/// it has no Ready document.
pub fn aggregate(documents: &[(serde_json::Value, Option<DateTime<Utc>>)]) -> Option<IcpCriteria> {
    if documents.is_empty() {
        return None;
    }
    let results: Vec<serde_json::Value> = documents.iter().map(|(icp, _)| icp.clone()).collect();
    let [industries, sizes, roles, regions] = FIELDS.map(|field| field_labels(&results, field));
    Some(IcpCriteria {
        target_industries: industries,
        company_sizes: sizes,
        decision_makers: roles,
        target_regions: regions,
        extracted_at: documents.iter().filter_map(|(_, at)| *at).max().map(timestamp),
    })
}

/// The ICP in the seed API's shape (snake_case keys), as agents read it from `icp.json`.
#[derive(Debug, Serialize)]
struct SeedIcp<'a> {
    target_industries: &'a [String],
    company_sizes: &'a [String],
    decision_makers: &'a [String],
    target_regions: &'a [String],
    extracted_at: Option<&'a str>,
}

/// `icp.json` for the customer's agents.
pub fn agent_file(icp: Option<&IcpCriteria>) -> String {
    let empty = IcpCriteria::default();
    let icp = icp.unwrap_or(&empty);
    let seed = SeedIcp {
        target_industries: &icp.target_industries,
        company_sizes: &icp.company_sizes,
        decision_makers: &icp.decision_makers,
        target_regions: &icp.target_regions,
        extracted_at: icp.extracted_at.as_deref(),
    };
    serde_json::to_string_pretty(&seed).unwrap_or_else(|_| "{}".into())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    fn label(name: &str, confidence: f64) -> serde_json::Value {
        json!({"label": name, "confidence": confidence, "chunk": 0, "matched": name, "evidence": "phrase"})
    }

    #[test]
    fn labels_are_weighted_by_confidence_across_documents() {
        let at = |h| Some(Utc.with_ymd_and_hms(2026, 11, 29, h, 0, 0).unwrap());
        let documents = vec![
            (
                json!({"target_industries": [label("fintech", 0.9), label("fintech", 0.7), label("gaming", 0.3)],
                    "decision_makers": [label("CFO", 0.95)]}),
                at(9),
            ),
            (
                json!({"target_industries": [label("gaming", 0.35), label("insurance", 0.8)],
                    "target_regions": [label("Europe", 0.5)]}),
                at(11),
            ),
        ];
        let icp = aggregate(&documents).unwrap();
        // fintech 0.9 (its best in one document), insurance 0.8, gaming 0.3 + 0.35 = 0.65.
        assert_eq!(icp.target_industries, ["fintech", "insurance", "gaming"]);
        assert_eq!(icp.decision_makers, ["CFO"]);
        assert!(icp.target_regions.is_empty(), "one weak mention is not enough");
        assert_eq!(icp.extracted_at.as_deref(), Some("2026-11-29T11:00:00Z"));
        assert_eq!(aggregate(&[]), None);
    }

    #[test]
    fn at_most_the_strongest_labels_are_kept() {
        let many: Vec<serde_json::Value> =
            (0..12).map(|i| label(&format!("l{i:02}"), 0.6 + f64::from(i) * 0.01)).collect();
        let icp = aggregate(&[(json!({"company_sizes": many}), None)]).unwrap();
        assert_eq!(icp.company_sizes.len(), MAX_LABELS);
        assert_eq!(icp.company_sizes[0], "l11");
    }

    #[test]
    fn agents_read_the_seed_shape() {
        let icp = IcpCriteria { target_industries: vec!["healthcare".into()], ..Default::default() };
        let file: serde_json::Value = serde_json::from_str(&agent_file(Some(&icp))).unwrap();
        assert_eq!(file["target_industries"], json!(["healthcare"]));
        assert_eq!(file["company_sizes"], json!([]));
        let empty: serde_json::Value = serde_json::from_str(&agent_file(None)).unwrap();
        assert_eq!(empty["decision_makers"], json!([]));
    }
}
