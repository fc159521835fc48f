//! Search over one customer's processed documents: cosine top-k, or hybrid (vector and keyword ranks
//! fused by reciprocal rank fusion), with tag and document filters. Every statement names the
//! customer: no other tenant's chunk is a candidate.
//!
//! The vector ranking is an exact scan of the customer's rows (through the `customer_id`
//! btree), not the global HNSW index: under a tenant filter that index loses recall badly for
//! large tenants and off-topic queries (DESIGN.md, "Search").

use pgvector::Vector;
use sqlx::PgPool;

use crate::StoreError;

/// How results are ranked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SearchMode {
    /// Cosine similarity alone.
    Vector,
    /// Cosine and full-text ranks fused by reciprocal rank fusion.
    #[default]
    Hybrid,
}

/// A search within one customer.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchRequest<'a> {
    pub customer_id: i64,
    /// The query's embedding (384 floats, L2-normalised).
    pub embedding: &'a [f32],
    /// The query's words, for the keyword ranking of hybrid mode.
    pub text: &'a str,
    pub top_k: i64,
    /// Only documents carrying at least one of these tags (none: no filter).
    pub tags: &'a [String],
    /// Only these documents, by public id (none: no filter).
    pub document_ids: &'a [String],
    pub mode: SearchMode,
}

/// One result.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct SearchHit {
    /// The public id, `doc_<hex>`.
    pub document_id: String,
    pub filename: String,
    pub chunk_index: i32,
    pub text: String,
    /// Cosine similarity in vector mode; the fused reciprocal-rank score in hybrid mode.
    pub score: f64,
}

/// The constant of reciprocal rank fusion: a result's score is Σ 1 / (RRF_K + rank).
pub const RRF_K: f64 = 60.0;

/// The customer's chunks of live documents that pass the filters ($1: customer, $3: tags, $4:
/// document ids). A document being processed again stays searchable with its last committed
/// chunks until the new ones replace them in one commit. `OFFSET 0` keeps the planner from ordering by the global HNSW
/// index.
const CANDIDATES: &str = "SELECT c.id, c.embedding, c.content_tsv
      FROM document_chunks c
      JOIN knowledge_documents d ON d.id = c.document_id AND d.customer_id = c.customer_id
     WHERE c.customer_id = $1 AND d.deleted_at IS NULL AND d.chunk_count IS NOT NULL
       AND (cardinality($3::text[]) = 0 OR d.tags ?| $3::text[])
       AND (cardinality($4::text[]) = 0 OR d.document_id = ANY($4::text[]))
    OFFSET 0";

/// Runs a search. `top_k` is clamped to 1..=50.
pub async fn search(pool: &PgPool, request: &SearchRequest<'_>) -> Result<Vec<SearchHit>, StoreError> {
    let top_k = request.top_k.clamp(1, 50);
    // $1 customer, $2 embedding, $3 tags, $4 document ids, $5 top_k; hybrid adds $6 the query's
    // words and $7 how many each ranking contributes to the fusion.
    let ranked = match request.mode {
        SearchMode::Vector => format!(
            "SELECT id, 1 - (embedding <=> $2) AS score FROM ({CANDIDATES}) cand
              ORDER BY embedding <=> $2 LIMIT $5"
        ),
        SearchMode::Hybrid => format!(
            "WITH cand AS MATERIALIZED ({CANDIDATES}),
                  by_vector AS (
                    SELECT id, row_number() OVER (ORDER BY embedding <=> $2) AS rank
                      FROM cand ORDER BY embedding <=> $2 LIMIT $7),
                  by_words AS (
                    SELECT id, row_number() OVER (ORDER BY ts_rank_cd(content_tsv, q) DESC, id) AS rank
                      FROM cand, websearch_to_tsquery('english', $6) q
                     WHERE content_tsv @@ q
                     ORDER BY rank LIMIT $7)
             SELECT id, sum(1.0 / ({RRF_K} + rank))::float8 AS score
               FROM (SELECT id, rank FROM by_vector UNION ALL SELECT id, rank FROM by_words) ranks
              GROUP BY id ORDER BY score DESC, id LIMIT $5"
        ),
    };
    let statement = format!(
        "SELECT d.document_id, d.filename, c.chunk_index, c.content AS text, r.score
           FROM ({ranked}) r
           JOIN document_chunks c ON c.id = r.id AND c.customer_id = $1
           JOIN knowledge_documents d ON d.id = c.document_id AND d.customer_id = $1
          ORDER BY r.score DESC, c.id"
    );
    let query = sqlx::query_as(&statement)
        .bind(request.customer_id)
        .bind(Vector::from(request.embedding.to_vec()))
        .bind(request.tags)
        .bind(request.document_ids)
        .bind(top_k);
    let query = match request.mode {
        SearchMode::Vector => query,
        // Each ranking contributes its best few times top_k; fusion picks from their union.
        SearchMode::Hybrid => query.bind(request.text).bind((top_k * 4).max(50)),
    };
    Ok(query.fetch_all(pool).await?)
}
