//! The controllers' scheduler releases the objects it held in the order they came due (the
//! patched kube-runtime, third_party/README.md): a controller at its concurrency limit works
//! through its backlog first come, first served. Pure: no cluster, no database.

use futures::channel::mpsc;
use futures::{StreamExt, poll};
use kube::runtime::scheduler::{ScheduleRequest, scheduler};
use tokio::time::{Duration, Instant};

#[tokio::test(start_paused = true)]
async fn held_messages_are_released_in_the_order_they_came_due() {
    let (sender, requests) = mpsc::unbounded();
    let mut scheduler = std::pin::pin!(scheduler(requests));
    let start = Instant::now();
    // 200 objects, each due a millisecond after the one before, requested in another order.
    let count: u64 = 200;
    for step in 0..count {
        let object = (step * 77) % count;
        let request = ScheduleRequest { message: object, run_at: start + Duration::from_millis(object) };
        sender.unbounded_send(request).unwrap();
    }
    tokio::time::advance(Duration::from_millis(count + 10)).await;
    // A controller at its limit holds everything that comes due...
    assert!(poll!(scheduler.as_mut().hold().next()).is_pending());
    // ...and takes one object each time a reconcile finishes.
    let mut released = Vec::new();
    for _ in 0..count {
        released.push(scheduler.as_mut().hold_unless(|_| true).next().await.unwrap());
    }
    assert_eq!(released, (0..count).collect::<Vec<_>>(), "first come, first served");
}
