//! Search over one customer's processed documents: cosine top-k, or hybrid (vector and keyword ranks
//! fused by reciprocal rank fusion), with tag and document filters. Every statement names the
//! customer: no other tenant's chunk is a candidate.
//!
//! The vector ranking takes one of two paths, chosen per query by what the catalog holds:
//! - **exact**: a scan of the customer's rows through the `customer_id` btree, for customers
//!   without an index of their own; exact, and cheap while the customer is small;
//! - **indexed**: the customer's partial HNSW index (`tenant_index`), which the operator builds
//!   once a customer is large, searched with a raised `hnsw.ef_search`, then re-sorted by exact
//!   distance. Searches with tag or document filters scan exactly (see `path_of`).
//!
//! There is no global vector index: under a tenant filter it loses recall for large tenants and
//! off-topic queries (migration 0008, docs/benchmarks.md).

use pgvector::Vector;
use sqlx::Arguments;
use sqlx::PgPool;
use sqlx::postgres::PgArguments;

use crate::StoreError;
use crate::tenant_index::has_valid_index;

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

/// Results a search returns unless asked for more or fewer (the seed API's `top_k` default).
pub const DEFAULT_TOP_K: i64 = 5;

impl<'a> SearchRequest<'a> {
    /// A search with the API's defaults: the top 5, hybrid, no filters.
    pub fn new(customer_id: i64, embedding: &'a [f32], text: &'a str) -> Self {
        Self {
            customer_id,
            embedding,
            text,
            top_k: DEFAULT_TOP_K,
            tags: &[],
            document_ids: &[],
            mode: SearchMode::default(),
        }
    }
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

/// How the indexed path trades time for recall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SearchTuning {
    /// `hnsw.ef_search`: candidates the graph walk keeps (pgvector allows 1..=1000).
    pub ef_search: u32,
}

impl Default for SearchTuning {
    fn default() -> Self {
        Self { ef_search: DEFAULT_EF_SEARCH }
    }
}

/// The `hnsw.ef_search` of the indexed path, chosen with the tenant search benchmark
/// (docs/benchmarks.md): the value where recall@10 holds for off-topic queries on the largest
/// tenant.
pub const DEFAULT_EF_SEARCH: u32 = 400;

/// Which path a search's vector ranking takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchPath {
    /// A scan of every candidate row of the customer.
    Exact,
    /// The customer's partial HNSW index.
    Indexed,
}

/// `FROM … WHERE …` of the customer's chunks of live documents that pass the filters ($3: tags,
/// $4: document ids). `customer` is `$1`, or the id as a literal so that the planner can prove
/// the predicate of the customer's partial index. A document being processed again stays
/// searchable with its last committed chunks until the new ones replace them in one commit.
fn candidates(customer: &str, also_from: &str) -> String {
    format!(
        "FROM document_chunks c
           JOIN knowledge_documents d ON d.id = c.document_id AND d.customer_id = c.customer_id{also_from}
          WHERE c.customer_id = {customer} AND d.deleted_at IS NULL AND d.chunk_count IS NOT NULL
            AND (cardinality($3::text[]) = 0 OR d.tags ?| $3::text[])
            AND (cardinality($4::text[]) = 0 OR d.document_id = ANY($4::text[]))"
    )
}

/// The `limit` nearest candidates as `(id, distance)`, nearest first.
fn nearest(path: SearchPath, customer_id: i64, limit: &str) -> String {
    match path {
        // `OFFSET 0` keeps the planner from ordering through an index: the scan is exact.
        SearchPath::Exact => format!(
            "SELECT id, distance FROM (SELECT c.id, c.embedding <=> $2 AS distance {} OFFSET 0) s
              ORDER BY distance, id LIMIT {limit}",
            candidates("$1", "")
        ),
        // Iterative scans return rows in roughly ascending order: sort them exactly.
        SearchPath::Indexed => format!(
            "SELECT id, distance FROM (SELECT c.id, c.embedding <=> $2 AS distance {}
                                        ORDER BY c.embedding <=> $2 LIMIT {limit}) s
              ORDER BY distance, id",
            candidates(&customer_id.to_string(), "")
        ),
    }
}

fn statement(request: &SearchRequest<'_>, path: SearchPath) -> String {
    // $1 customer, $2 embedding, $3 tags, $4 document ids, $5 top_k; hybrid adds $6 the query's
    // words and $7 how many each ranking contributes to the fusion.
    let ranked = match request.mode {
        SearchMode::Vector => {
            format!("SELECT id, 1 - distance AS score FROM ({}) v", nearest(path, request.customer_id, "$5"))
        }
        SearchMode::Hybrid => format!(
            "WITH by_vector AS (
                    SELECT id, row_number() OVER (ORDER BY distance, id) AS rank FROM ({}) v),
                  by_words AS (
                    SELECT c.id, row_number() OVER (ORDER BY ts_rank_cd(c.content_tsv, q) DESC, c.id) AS rank
                      {} AND c.content_tsv @@ q
                     ORDER BY rank LIMIT $7)
             SELECT id, sum(1.0 / ({RRF_K} + rank))::float8 AS score
               FROM (SELECT id, rank FROM by_vector UNION ALL SELECT id, rank FROM by_words) ranks
              GROUP BY id ORDER BY score DESC, id LIMIT $5",
            nearest(path, request.customer_id, "$7"),
            candidates("$1", ", websearch_to_tsquery('english', $6) q"),
        ),
    };
    // The ranked ids are looked up one by one (`OFFSET 0` keeps the lateral subquery from being
    // flattened into a join): with statistics that do not know yet of a large upload, the
    // planner would otherwise hash-join the ids with every chunk of the customer, measured 95 ms
    // instead of 21 ms at 12,000 chunks.
    format!(
        "SELECT x.document_id, x.filename, x.chunk_index, x.text, r.score
           FROM ({ranked}) r
          CROSS JOIN LATERAL (
                SELECT d.document_id, d.filename, c.chunk_index, c.content AS text
                  FROM document_chunks c
                  JOIN knowledge_documents d ON d.id = c.document_id AND d.customer_id = c.customer_id
                 WHERE c.id = r.id AND c.customer_id = $1
                OFFSET 0) x
          ORDER BY r.score DESC, r.id"
    )
}

fn arguments(request: &SearchRequest<'_>) -> Result<PgArguments, StoreError> {
    let top_k = request.top_k.clamp(1, 50);
    let mut arguments = PgArguments::default();
    let bound = (|| {
        arguments.add(request.customer_id)?;
        arguments.add(Vector::from(request.embedding.to_vec()))?;
        arguments.add(request.tags)?;
        arguments.add(request.document_ids)?;
        arguments.add(top_k)?;
        if request.mode == SearchMode::Hybrid {
            arguments.add(request.text)?;
            // Each ranking contributes its best few times top_k; fusion picks from their union.
            arguments.add((top_k * 4).max(50))?;
        }
        Ok::<(), sqlx::error::BoxDynError>(())
    })();
    bound.map_err(|e| StoreError::Database(sqlx::Error::Encode(e)))?;
    Ok(arguments)
}

/// The path an unfiltered search for this customer takes now.
pub async fn search_path(pool: &PgPool, customer_id: i64) -> Result<SearchPath, StoreError> {
    Ok(if has_valid_index(pool, customer_id).await? { SearchPath::Indexed } else { SearchPath::Exact })
}

/// The path this search takes. A filtered search scans exactly: a graph walk stops after a
/// bounded number of rows (`hnsw.max_scan_tuples`), so a filter that few of a large customer's
/// chunks pass could leave it short of top k or without the true neighbours; the exact scan
/// reads only the chunks of the documents that pass.
async fn path_of(pool: &PgPool, request: &SearchRequest<'_>) -> Result<SearchPath, StoreError> {
    if !request.tags.is_empty() || !request.document_ids.is_empty() {
        return Ok(SearchPath::Exact);
    }
    search_path(pool, request.customer_id).await
}

/// Runs a search with the default tuning. `top_k` is clamped to 1..=50.
pub async fn search(pool: &PgPool, request: &SearchRequest<'_>) -> Result<Vec<SearchHit>, StoreError> {
    search_tuned(pool, request, SearchTuning::default()).await
}

/// Runs a search. `top_k` is clamped to 1..=50.
pub async fn search_tuned(
    pool: &PgPool,
    request: &SearchRequest<'_>,
    tuning: SearchTuning,
) -> Result<Vec<SearchHit>, StoreError> {
    let path = path_of(pool, request).await?;
    let statement = statement(request, path);
    // Never a prepared statement: after five runs Postgres may switch to a generic plan, which
    // cannot know how large this customer is and (measured at 134k chunks) joins every chunk
    // with every document, 1 s instead of 0.1 s. Unnamed statements are planned for their values
    // each time, for about a millisecond.
    let query = sqlx::query_as_with(&statement, arguments(request)?).persistent(false);
    match path {
        SearchPath::Exact => Ok(query.fetch_all(pool).await?),
        SearchPath::Indexed => {
            let mut tx = pool.begin().await?;
            set_index_options(&mut tx, tuning).await?;
            let hits = query.fetch_all(&mut *tx).await?;
            tx.commit().await?;
            Ok(hits)
        }
    }
}

/// Sets the indexed path's options for the transaction: the graph walk's breadth, iterative
/// scans (so filters still fill the top k), and `enable_sort = off`. The last one is what makes
/// the planner take the index at all: for a customer of a few thousand rows it prices a top-k
/// sort of every row below a graph walk. Sorting stays possible (the re-sort of the index's
/// output, the keyword ranking); Postgres 18 counts disabled nodes, and the plan with the
/// fewest, the one through the index, wins.
async fn set_index_options(tx: &mut sqlx::PgTransaction<'_>, tuning: SearchTuning) -> Result<(), StoreError> {
    let ef_search = tuning.ef_search.clamp(1, 1000);
    sqlx::query(
        "SELECT set_config('hnsw.ef_search', $1, true), set_config('hnsw.iterative_scan', 'relaxed_order', true),
                set_config('enable_sort', 'off', true)",
    )
    .bind(ef_search.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The plan Postgres chooses for this search (`EXPLAIN`), and the path it was written for: how
/// tests and operators check that a large customer's search really goes through its index.
pub async fn explain(pool: &PgPool, request: &SearchRequest<'_>) -> Result<(SearchPath, String), StoreError> {
    let path = path_of(pool, request).await?;
    let statement = format!("EXPLAIN {}", statement(request, path));
    let mut tx = pool.begin().await?;
    if path == SearchPath::Indexed {
        set_index_options(&mut tx, SearchTuning::default()).await?;
    }
    let lines: Vec<String> =
        sqlx::query_scalar_with(&statement, arguments(request)?).persistent(false).fetch_all(&mut *tx).await?;
    tx.commit().await?;
    Ok((path, lines.join("\n")))
}
