//! The uploads a replica holds in memory at once: a few for all callers together, and at most
//! half of them (at least one) for any one customer's key, so that one customer's slow uploads
//! cannot hold every slot for the read timeout while everyone else waits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::Caller;
use crate::error::{ApiResult, AppError};

type Shares = Arc<Mutex<HashMap<i64, Arc<Semaphore>>>>;

/// The replica's upload slots.
#[derive(Debug)]
pub struct UploadSlots {
    all: Arc<Semaphore>,
    per_customer: usize,
    /// Each customer's share, while one of its uploads holds or waits for a slot.
    shares: Shares,
}

/// One held slot; dropping it frees it.
#[derive(Debug)]
pub struct UploadSlot {
    _permit: OwnedSemaphorePermit,
    _share: Option<Share>,
}

/// A customer's permit of its share; dropping it (also when its wait is cancelled) forgets the
/// share once nobody holds or waits for it.
#[derive(Debug)]
struct Share {
    customer_id: i64,
    permit: Option<OwnedSemaphorePermit>,
    shares: Shares,
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut shares = self.shares.lock().unwrap_or_else(|p| p.into_inner());
        drop(self.permit.take());
        // The map's own reference is the last one: no upload of this customer holds or waits.
        if shares.get(&self.customer_id).is_some_and(|share| Arc::strong_count(share) == 1) {
            shares.remove(&self.customer_id);
        }
    }
}

impl UploadSlots {
    /// `total` slots (at least one), at most half of them for one customer.
    pub fn new(total: usize) -> Self {
        let total = total.max(1);
        Self { all: Arc::new(Semaphore::new(total)), per_customer: (total / 2).max(1), shares: Arc::default() }
    }

    /// A slot for this caller's upload. A customer's uploads past its share wait for one of its
    /// own to finish, while other customers' take the free slots. The admin has no share.
    pub async fn acquire(&self, caller: &Caller) -> ApiResult<UploadSlot> {
        let shutting_down = |_| AppError::Unavailable("shutting down".into());
        let share = match caller {
            Caller::Admin => None,
            Caller::Customer(owner) => {
                let semaphore = {
                    let mut shares = self.shares.lock().unwrap_or_else(|p| p.into_inner());
                    let share =
                        shares.entry(owner.customer_id).or_insert_with(|| Arc::new(Semaphore::new(self.per_customer)));
                    share.clone()
                };
                // Counted from here, so a wait cancelled below still cleans up.
                let mut share = Share { customer_id: owner.customer_id, permit: None, shares: self.shares.clone() };
                share.permit = Some(semaphore.acquire_owned().await.map_err(shutting_down)?);
                Some(share)
            }
        };
        let permit = self.all.clone().acquire_owned().await.map_err(shutting_down)?;
        Ok(UploadSlot { _permit: permit, _share: share })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use prospector_store::api_keys::KeyOwner;

    fn customer(id: i64) -> Caller {
        Caller::Customer(KeyOwner { customer_id: id, name: format!("customer-{id}"), suspended: false })
    }

    #[tokio::test]
    async fn one_customer_holds_at_most_half_the_slots_and_its_others_wait() {
        let slots = UploadSlots::new(4);
        let first = slots.acquire(&customer(1)).await.unwrap();
        let _second = slots.acquire(&customer(1)).await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(50), slots.acquire(&customer(1))).await;
        assert!(waiting.is_err(), "a third upload of customer 1 waits");
        // Another customer still gets the rest; then every slot is held and the admin waits.
        let _third = slots.acquire(&customer(2)).await.unwrap();
        let fourth = slots.acquire(&customer(2)).await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(50), slots.acquire(&Caller::Admin)).await;
        assert!(waiting.is_err(), "every slot is held");
        drop(fourth);
        let admin = slots.acquire(&Caller::Admin).await.unwrap();
        // Customer 1's next upload goes once one of its own finished and a slot is free.
        drop(first);
        let next = tokio::time::timeout(Duration::from_secs(5), slots.acquire(&customer(1))).await;
        assert!(next.unwrap().is_ok());
        drop(admin);
    }

    #[tokio::test]
    async fn a_cancelled_wait_leaves_no_share_behind() {
        let slots = UploadSlots::new(2);
        let held = slots.acquire(&customer(9)).await.unwrap();
        assert!(tokio::time::timeout(Duration::from_millis(20), slots.acquire(&customer(9))).await.is_err());
        drop(held);
        assert!(slots.shares.lock().unwrap().is_empty(), "nobody holds or waits: no share is kept");
    }
}
