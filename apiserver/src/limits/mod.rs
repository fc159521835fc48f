//! Per-customer request limits, as the tier sets them: requests per second and per minute (one
//! GCRA cell each, in memory), and API calls per UTC day and month (counted in memory, flushed to
//! `usage_daily` every second, and re-read from it after each flush, which is how replicas learn
//! of each other's calls).
//!
//! Bounds, with R replicas behind one Service:
//! - per second / per minute: each replica enforces the full rate, so a client spread over R
//!   replicas may reach R times it;
//! - per day / per month: one replica admits exactly up to the limit (its own calls are counted
//!   before they are admitted). With R replicas, each learns of the others' calls at its next
//!   flush, so past the limit each other replica admits at most what its per-second limit lets
//!   through until then: a burst of its per-second limit plus two flush intervals of refill, at
//!   most (R − 1) × 3 × `rate_limit_per_second` calls more. A flush interval is one second plus
//!   the flush itself (two statements per customer that called since the last one).
//!
//! Agents' usage reports are the one call the day and month quotas never refuse (they still
//! count, and the rate limits apply): a customer past its quota must still report the cost that
//! its cost cap is enforced on.

pub mod gcra;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{Datelike, NaiveDate, Utc};
use gcra::{Cell, Decision, Rate};
use prospector_store::customers::{add_api_calls, usage_snapshot};
use sqlx::PgPool;

use crate::AppState;
use crate::auth::{Caller, authenticate};
use crate::error::AppError;

/// How often counted calls are written to `usage_daily`.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// How long a customer's limits are reused before they are read again (a tier change).
const LIMITS_TTL: Duration = Duration::from_secs(10);

/// A customer's limits and what Postgres last said of its usage.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Known {
    per_second: u32,
    per_minute: u32,
    per_day: i64,
    per_month: i64,
    /// Calls in Postgres today / this month, as of `read_at`.
    today: i64,
    month: i64,
    day: NaiveDate,
    read_at: Instant,
}

#[derive(Debug, Default)]
struct CustomerLimits {
    second: Cell,
    minute: Cell,
    known: Option<Known>,
    /// Admitted calls not yet flushed.
    pending: i64,
    /// Calls being flushed right now (counted until the flush has re-read the totals).
    flushing: i64,
    /// Flushes written so far: a snapshot read before the latest flush is discarded.
    flushes: u64,
}

/// What the RateLimit headers of an admitted request say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admitted {
    pub limit: u32,
    pub remaining: u32,
    pub reset: Duration,
}

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub message: String,
    pub retry_after: Duration,
    pub limit: u32,
}

/// Whether a call is refused once the day or month quota is used up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quota {
    Applies,
    /// An agent's usage report: counted, never refused by the quotas.
    Exempt,
}

/// The route of agents' usage reports (the router mounts it under this template).
pub const USAGE_REPORT_ROUTE: &str = "/api/agents/{deployment_id}/usage";

/// The limits of every customer this replica has seen.
#[derive(Debug)]
pub struct Limiter {
    epoch: Instant,
    customers: Mutex<HashMap<i64, CustomerLimits>>,
    /// Open self-registration, which has no key to count against: one budget for all callers.
    anonymous: Mutex<Cell>,
    /// Registration status reads with a registration token (each one a read of the Kubernetes
    /// API before the token can be checked): one budget for all callers.
    registration_reads: Mutex<Cell>,
}

impl Default for Limiter {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            customers: Mutex::default(),
            anonymous: Mutex::default(),
            registration_reads: Mutex::default(),
        }
    }
}

/// Anonymous self-registrations this replica admits per minute (a burst of as many).
pub const ANONYMOUS_REGISTRATIONS_PER_MINUTE: u32 = 10;
/// Registration status reads by registration token a replica answers per second, all callers
/// together (a client polls its own registration about once a second while it waits).
pub const REGISTRATION_READS_PER_SECOND: u32 = 20;

fn until_utc_midnight() -> Duration {
    let now = Utc::now();
    let tomorrow = now.date_naive().succ_opt().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc());
    tomorrow.and_then(|t| (t - now).to_std().ok()).unwrap_or(Duration::from_secs(1))
}

fn until_next_month() -> Duration {
    let now = Utc::now();
    let today = now.date_naive();
    let (year, month) = if today.month() == 12 { (today.year() + 1, 1) } else { (today.year(), today.month() + 1) };
    let next = NaiveDate::from_ymd_opt(year, month, 1).and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc());
    next.and_then(|t| (t - now).to_std().ok()).unwrap_or(Duration::from_secs(1))
}

impl Limiter {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, CustomerLimits>> {
        self.customers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads a customer's limits and usage from Postgres.
    async fn read(pool: &PgPool, customer_id: i64) -> Result<Known, AppError> {
        let today = Utc::now().date_naive();
        let month_start = today.with_day(1).unwrap_or(today);
        let snapshot = usage_snapshot(pool, customer_id, today, month_start)
            .await?
            .ok_or(AppError::Unavailable("the customer's quotas are not set up yet".into()))?;
        let rate = |limit: i32| u32::try_from(limit).unwrap_or(0);
        Ok(Known {
            per_second: rate(snapshot.limits.rate_limit_per_second),
            per_minute: rate(snapshot.limits.rate_limit_per_minute),
            per_day: snapshot.limits.max_api_calls_per_day,
            per_month: snapshot.limits.max_api_calls_per_month,
            today: snapshot.api_calls_today,
            month: snapshot.api_calls_this_month,
            day: today,
            read_at: Instant::now(),
        })
    }

    /// Reads a customer's limits and usage into the cache, unless a flush wrote meanwhile (its
    /// own read, after the write, is the newer one).
    async fn refresh(&self, pool: &PgPool, customer_id: i64) -> Result<(), AppError> {
        let flushes = self.lock().get(&customer_id).map_or(0, |c| c.flushes);
        let known = Self::read(pool, customer_id).await?;
        let mut customers = self.lock();
        let state = customers.entry(customer_id).or_default();
        if state.flushes == flushes || state.known.is_none() {
            state.known = Some(known);
        }
        Ok(())
    }

    /// Admits one API call of `customer_id`, or says why not.
    pub async fn admit(
        &self,
        pool: &PgPool,
        customer_id: i64,
        quota: Quota,
    ) -> Result<Result<Admitted, Refused>, AppError> {
        let today = Utc::now().date_naive();
        let stale = self
            .lock()
            .get(&customer_id)
            .and_then(|c| c.known)
            .is_none_or(|k| k.read_at.elapsed() > LIMITS_TTL || k.day != today);
        if stale {
            self.refresh(pool, customer_id).await?;
        }
        let now = self.epoch.elapsed();
        let mut customers = self.lock();
        let state = customers.entry(customer_id).or_default();
        let Some(known) = state.known else {
            return Err(AppError::Unavailable("the customer's limits could not be read".into()));
        };
        Ok(decide(state, &known, now, quota))
    }

    /// Admits one anonymous self-registration against the replica's budget.
    pub fn admit_anonymous(&self) -> Result<(), AppError> {
        let rate = Rate { limit: ANONYMOUS_REGISTRATIONS_PER_MINUTE, period: Duration::from_secs(60) };
        self.admit_shared(&self.anonymous, rate, "self-registration", "a minute")
    }

    /// Admits one registration status read by registration token against the replica's budget.
    pub fn admit_registration_read(&self) -> Result<(), AppError> {
        let rate = Rate { limit: REGISTRATION_READS_PER_SECOND, period: Duration::from_secs(1) };
        self.admit_shared(&self.registration_reads, rate, "reading a registration by its token", "a second")
    }

    fn admit_shared(&self, cell: &Mutex<Cell>, rate: Rate, what: &str, per: &str) -> Result<(), AppError> {
        let mut cell = cell.lock().unwrap_or_else(|p| p.into_inner());
        match cell.check(rate, self.epoch.elapsed()) {
            Decision::Allowed { .. } => Ok(()),
            Decision::Denied { retry_after } => Err(AppError::RateLimited(format!(
                "{what} is limited to {} {per}; retry in {} s",
                rate.limit,
                seconds_up(retry_after).max(1)
            ))),
        }
    }

    /// Takes the calls to flush: `(customer, count)`.
    fn take_pending(&self) -> Vec<(i64, i64)> {
        let mut customers = self.lock();
        customers
            .iter_mut()
            .filter(|(_, c)| c.pending > 0)
            .map(|(id, c)| {
                c.flushing += c.pending;
                (*id, std::mem::take(&mut c.pending))
            })
            .collect()
    }

    /// Writes the counted calls to `usage_daily` and re-reads the totals, which then include
    /// every replica's flushed calls. A failed write keeps the calls for the next flush.
    pub async fn flush(&self, pool: &PgPool) {
        let today = Utc::now().date_naive();
        for (customer_id, calls) in self.take_pending() {
            if let Err(e) = add_api_calls(pool, customer_id, today, calls).await {
                tracing::warn!(customer_id, calls, error = %e, "cannot record API calls; retrying at the next flush");
                let mut customers = self.lock();
                let state = customers.entry(customer_id).or_default();
                state.flushing -= calls;
                state.pending += calls;
                continue;
            }
            self.lock().entry(customer_id).or_default().flushes += 1;
            // The calls stay counted as flushing until the totals that include them are stored,
            // in the same critical section: no moment counts them nowhere.
            let known = Self::read(pool, customer_id).await;
            let mut customers = self.lock();
            let state = customers.entry(customer_id).or_default();
            match known {
                Ok(known) => {
                    state.known = Some(known);
                    state.flushing -= calls;
                }
                Err(e) => {
                    // Written but not re-read: count them as written (in the stale snapshot's
                    // terms) until the next read.
                    tracing::debug!(customer_id, error = %e, "cannot re-read usage after a flush");
                    if let Some(known) = state.known.as_mut() {
                        known.today += calls;
                        known.month += calls;
                    }
                    state.flushing -= calls;
                }
            }
        }
    }

    /// Flushes every [`FLUSH_INTERVAL`] until the process ends.
    pub async fn run_flusher(self: Arc<Self>, pool: PgPool) {
        let mut ticker = tokio::time::interval(FLUSH_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            self.flush(&pool).await;
        }
    }
}

/// The decision for one call, given the customer's state and limits. Rates first (they refill),
/// then the day and the month (they do not, until the next day or month).
fn decide(state: &mut CustomerLimits, known: &Known, now: Duration, quota: Quota) -> Result<Admitted, Refused> {
    if known.per_second == 0 || known.per_minute == 0 {
        return Err(Refused {
            message: "this customer's tier allows no API calls (rateLimitPerSecond or rateLimitPerMinute is 0)".into(),
            retry_after: Duration::from_secs(60),
            limit: 0,
        });
    }
    let second = Rate { limit: known.per_second, period: Duration::from_secs(1) };
    let minute = Rate { limit: known.per_minute, period: Duration::from_secs(60) };
    let (mut second_cell, mut minute_cell) = (state.second, state.minute);
    let by_second = second_cell.check(second, now);
    let by_minute = minute_cell.check(minute, now);
    let (allowed_second, allowed_minute) = match (by_second, by_minute) {
        (Decision::Denied { retry_after }, _) => {
            return Err(Refused {
                message: format!("the rate limit of {} requests per second is reached", known.per_second),
                retry_after,
                limit: known.per_second,
            });
        }
        (_, Decision::Denied { retry_after }) => {
            return Err(Refused {
                message: format!("the rate limit of {} requests per minute is reached", known.per_minute),
                retry_after,
                limit: known.per_minute,
            });
        }
        (Decision::Allowed { remaining: s, reset: rs }, Decision::Allowed { remaining: m, reset: rm }) => {
            ((s, rs), (m, rm))
        }
    };
    let counted = state.pending + state.flushing;
    if quota == Quota::Applies && known.today + counted >= known.per_day {
        return Err(Refused {
            message: format!(
                "the daily API call quota is used up: {} of {} calls today (maxApiCallsPerDay)",
                (known.today + counted).min(known.per_day),
                known.per_day
            ),
            retry_after: until_utc_midnight(),
            limit: u32::try_from(known.per_day).unwrap_or(u32::MAX),
        });
    }
    if quota == Quota::Applies && known.month + counted >= known.per_month {
        return Err(Refused {
            message: format!(
                "the monthly API call quota is used up: {} of {} calls this month (maxApiCallsPerMonth)",
                (known.month + counted).min(known.per_month),
                known.per_month
            ),
            retry_after: until_next_month(),
            limit: u32::try_from(known.per_month).unwrap_or(u32::MAX),
        });
    }
    state.second = second_cell;
    state.minute = minute_cell;
    state.pending += 1;
    // The headers describe the tighter of the two windows.
    let ((remaining, reset), limit) = if allowed_minute.0 < allowed_second.0 {
        (allowed_minute, known.per_minute)
    } else {
        (allowed_second, known.per_second)
    };
    Ok(Admitted { limit, remaining, reset })
}

fn seconds_up(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

fn set(headers: &mut HeaderMap, name: &'static str, value: u64) {
    if let Ok(value) = HeaderValue::from_str(&value.to_string()) {
        headers.insert(name, value);
    }
}

/// Middleware: authenticates a bearer token once per request (the handlers' [`Caller`] then
/// comes from the request), and for a customer's key admits the call against its limits,
/// answering `429` with `Retry-After` and `RateLimit-*` headers when it does not fit. Requests
/// without valid credentials pass through to the handler, which refuses them.
pub async fn enforce(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let token = crate::auth::bearer(request.headers()).ok().flatten().map(str::to_owned);
    let Some(token) = token else { return next.run(request).await };
    // Tokens that do not authenticate (or are not API keys, like a registration token) are
    // the handler's to refuse or accept.
    let Ok(caller) = authenticate(&state, &token).await else { return next.run(request).await };
    let quota = match request.extensions().get::<MatchedPath>() {
        Some(route) if route.as_str() == USAGE_REPORT_ROUTE => Quota::Exempt,
        _ => Quota::Applies,
    };
    let admitted = match &caller {
        Caller::Admin => None,
        Caller::Customer(owner) => match state.limiter.admit(&state.pool, owner.customer_id, quota).await {
            Ok(Ok(admitted)) => Some(admitted),
            Ok(Err(refused)) => {
                let mut response = AppError::RateLimited(refused.message).into_response();
                let headers = response.headers_mut();
                set(headers, "retry-after", seconds_up(refused.retry_after).max(1));
                set(headers, "ratelimit-limit", u64::from(refused.limit));
                set(headers, "ratelimit-remaining", 0);
                set(headers, "ratelimit-reset", seconds_up(refused.retry_after).max(1));
                return response;
            }
            Err(error) => return error.into_response(),
        },
    };
    request.extensions_mut().insert(caller);
    let mut response = next.run(request).await;
    if let Some(admitted) = admitted {
        let headers = response.headers_mut();
        set(headers, "ratelimit-limit", u64::from(admitted.limit));
        set(headers, "ratelimit-remaining", u64::from(admitted.remaining));
        set(headers, "ratelimit-reset", seconds_up(admitted.reset));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(per_second: u32, per_day: i64) -> Known {
        Known {
            per_second,
            per_minute: 1000,
            per_day,
            per_month: 1_000_000,
            today: 0,
            month: 0,
            day: Utc::now().date_naive(),
            read_at: Instant::now(),
        }
    }

    #[test]
    fn the_day_quota_admits_exactly_up_to_the_limit() {
        let mut state = CustomerLimits::default();
        let limits = known(1000, 30);
        let admitted =
            (0..100).filter(|i| decide(&mut state, &limits, Duration::from_millis(*i), Quota::Applies).is_ok()).count();
        assert_eq!(admitted, 30);
        let refused = decide(&mut state, &limits, Duration::from_secs(5), Quota::Applies).unwrap_err();
        assert!(refused.message.contains("30 of 30") && refused.message.contains("maxApiCallsPerDay"), "{refused:?}");
        assert!(refused.retry_after <= Duration::from_secs(86_400));
    }

    #[test]
    fn a_rate_of_zero_allows_nothing() {
        let mut state = CustomerLimits::default();
        let refused = decide(&mut state, &known(0, 1000), Duration::from_secs(1), Quota::Applies).unwrap_err();
        assert!(refused.message.contains("allows no API calls"), "{refused:?}");
    }

    #[test]
    fn calls_being_flushed_still_count() {
        let mut state = CustomerLimits { flushing: 9, ..CustomerLimits::default() };
        let limits = Known { today: 0, ..known(1000, 10) };
        assert!(decide(&mut state, &limits, Duration::ZERO, Quota::Applies).is_ok());
        assert!(decide(&mut state, &limits, Duration::ZERO, Quota::Applies).is_err());
    }

    #[test]
    fn a_rate_refusal_spends_nothing() {
        let mut state = CustomerLimits::default();
        let limits = known(2, 1000);
        assert!(decide(&mut state, &limits, Duration::from_secs(10), Quota::Applies).is_ok());
        let admitted = decide(&mut state, &limits, Duration::from_secs(10), Quota::Applies).unwrap();
        assert_eq!((admitted.limit, admitted.remaining), (2, 0));
        let refused = decide(&mut state, &limits, Duration::from_secs(10), Quota::Applies).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_millis(500));
        assert!(refused.message.contains("2 requests per second"));
        assert_eq!(state.pending, 2, "only admitted calls are counted");
    }

    #[test]
    fn shared_budgets_refuse_past_their_burst_each_on_its_own() {
        let limiter = Limiter::default();
        let reads = (0..100).filter(|_| limiter.admit_registration_read().is_ok()).count();
        assert_eq!(reads, REGISTRATION_READS_PER_SECOND as usize);
        let refused = limiter.admit_registration_read().unwrap_err();
        assert_eq!(refused.status_code(), axum::http::StatusCode::TOO_MANY_REQUESTS);
        assert!(refused.to_string().contains("20 a second"), "{refused}");
        // Self-registration has a budget of its own.
        let registrations = (0..100).filter(|_| limiter.admit_anonymous().is_ok()).count();
        assert_eq!(registrations, ANONYMOUS_REGISTRATIONS_PER_MINUTE as usize);
    }

    #[test]
    fn usage_reports_pass_a_used_up_quota_but_still_count_and_keep_the_rate() {
        let mut state = CustomerLimits::default();
        let limits = Known { today: 30, ..known(2, 30) };
        assert!(decide(&mut state, &limits, Duration::from_secs(10), Quota::Applies).is_err());
        assert!(decide(&mut state, &limits, Duration::from_secs(10), Quota::Exempt).is_ok());
        assert_eq!(state.pending, 1, "the report is counted");
        assert!(decide(&mut state, &limits, Duration::from_secs(10), Quota::Exempt).is_ok());
        let refused = decide(&mut state, &limits, Duration::from_secs(10), Quota::Exempt).unwrap_err();
        assert!(refused.message.contains("per second"), "{refused:?}");
    }
}
