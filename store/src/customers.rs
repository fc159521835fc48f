//! The `customers` table: one row per Customer object, keyed by its UID.

use sqlx::PgPool;
use uuid::Uuid;

use crate::StoreError;

/// The fields of a Customer that Postgres mirrors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomerRecord {
    pub k8s_uid: Uuid,
    pub name: String,
    pub company_name: String,
    pub email: String,
    pub subscription_tier: String,
}

/// Inserts or updates the customer row of a Customer object and returns its id
/// (`status.customerId`). Replaying it after a crash returns the same id.
pub async fn upsert_customer(pool: &PgPool, customer: &CustomerRecord) -> Result<i64, StoreError> {
    let id = sqlx::query_scalar(
        "INSERT INTO customers (k8s_uid, name, company_name, email, subscription_tier)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (k8s_uid) DO UPDATE
            SET company_name = EXCLUDED.company_name,
                subscription_tier = EXCLUDED.subscription_tier
         RETURNING id",
    )
    .bind(customer.k8s_uid)
    .bind(&customer.name)
    .bind(&customer.company_name)
    .bind(&customer.email)
    .bind(&customer.subscription_tier)
    .fetch_one(pool)
    .await?;
    Ok(id)
}
