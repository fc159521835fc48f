//! Lease-based leader election (coordination.k8s.io/v1 Lease), so that of several operator
//! replicas exactly one reconciles. A replica that cannot renew its lease within the lease
//! duration stops reconciling (the process exits and is restarted as a follower).

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};

use crate::error::OperatorError;

/// Where the lease lives and who competes for it.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a lease stays valid without renewal.
    pub duration: Duration,
    /// How often the holder renews, and candidates retry.
    pub retry: Duration,
}

/// The state of this replica's candidacy.
#[derive(Debug)]
pub struct LeaderElector {
    api: Api<Lease>,
    settings: LeaseSettings,
}

fn expired(spec: &LeaseSpec, now: Timestamp, default_duration: Duration) -> bool {
    let duration =
        spec.lease_duration_seconds.map(|s| Duration::from_secs(s.max(0) as u64)).unwrap_or(default_duration);
    match &spec.renew_time {
        Some(MicroTime(renewed)) => {
            let age = now.duration_since(*renewed);
            age.as_secs_f64() > duration.as_secs_f64()
        }
        None => true,
    }
}

/// When a holder whose last renewal was sent at `last_renewal` stops: one retry interval
/// before the lease can expire.
fn give_up_at(last_renewal: Instant, settings: &LeaseSettings) -> Instant {
    last_renewal + settings.duration.saturating_sub(settings.retry)
}

impl LeaderElector {
    pub fn new(client: Client, settings: LeaseSettings) -> Self {
        Self { api: Api::namespaced(client, &settings.namespace), settings }
    }

    /// Takes or renews the lease; `Ok(false)` when another replica holds a valid one or won a
    /// race for it (the apiserver's optimistic concurrency decides).
    pub async fn try_acquire_or_renew(&self) -> Result<bool, OperatorError> {
        let now = Timestamp::now();
        let me = &self.settings.identity;
        let duration_s = self.settings.duration.as_secs().max(1) as i32;
        match self.api.get_opt(&self.settings.name).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta { name: Some(self.settings.name.clone()), ..Default::default() },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(me.clone()),
                        lease_duration_seconds: Some(duration_s),
                        acquire_time: Some(MicroTime(now)),
                        renew_time: Some(MicroTime(now)),
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e.into()),
                }
            }
            Some(mut lease) => {
                let spec = lease.spec.clone().unwrap_or_default();
                let held_by_me = spec.holder_identity.as_deref() == Some(me.as_str());
                let free = spec.holder_identity.as_deref().is_none_or(str::is_empty)
                    || expired(&spec, now, self.settings.duration);
                if !held_by_me && !free {
                    return Ok(false);
                }
                let transitions = spec.lease_transitions.unwrap_or(0) + if held_by_me { 0 } else { 1 };
                lease.spec = Some(LeaseSpec {
                    holder_identity: Some(me.clone()),
                    lease_duration_seconds: Some(duration_s),
                    acquire_time: if held_by_me { spec.acquire_time } else { Some(MicroTime(now)) },
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(transitions),
                    ..Default::default()
                });
                // replace() sends the resourceVersion we read: a concurrent writer makes it 409.
                match self.api.replace(&self.settings.name, &PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// Waits until this replica holds the lease.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(identity = %self.settings.identity, lease = %self.settings.name, "became the leader");
                    return;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read the leader lease"),
            }
            tokio::time::sleep(self.settings.retry).await;
        }
    }

    /// Renews the lease until it is lost; returns why. Losing it means another replica may
    /// already be reconciling, so the caller must stop at once.
    ///
    /// Another replica may take the lease `duration` after its last renewal, so this replica
    /// gives up one retry interval before that, whether or not the apiserver answers: a renewal
    /// that hangs (an apiserver restarting, a dead connection) must not keep it reconciling past
    /// the lease. A renewal counts from when it was sent, the time it wrote into the lease.
    pub async fn hold(&self) -> OperatorError {
        let mut last_renewal = Instant::now();
        loop {
            tokio::time::sleep(self.settings.retry).await;
            let deadline = give_up_at(last_renewal, &self.settings);
            let sent = Instant::now();
            match tokio::time::timeout_at(deadline.into(), self.try_acquire_or_renew()).await {
                Ok(Ok(true)) => last_renewal = sent,
                Ok(Ok(false)) => return OperatorError::Leadership("another replica holds the lease".into()),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot renew the leader lease");
                    if Instant::now() + self.settings.retry >= deadline {
                        return OperatorError::Leadership(format!("lease not renewed in time: {e}"));
                    }
                }
                Err(_) => {
                    return OperatorError::Leadership("lease not renewed in time: the apiserver did not answer".into());
                }
            }
        }
    }

    /// Gives the lease up so a follower takes over without waiting for it to expire. Only a
    /// lease this replica still holds is cleared (optimistic concurrency again).
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.settings.name).await else { return };
        let Some(spec) = lease.spec.as_mut() else { return };
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        if let Err(e) = self.api.replace(&self.settings.name, &PostParams::default(), &lease).await {
            tracing::warn!(error = %e, "cannot release the leader lease");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_expires_after_its_duration() {
        let now = Timestamp::now();
        let renewed = |secs_ago: i64| LeaseSpec {
            renew_time: Some(MicroTime(now - k8s_openapi::jiff::SignedDuration::from_secs(secs_ago))),
            lease_duration_seconds: Some(15),
            ..Default::default()
        };
        assert!(!expired(&renewed(5), now, Duration::from_secs(15)));
        assert!(expired(&renewed(20), now, Duration::from_secs(15)));
        assert!(expired(&LeaseSpec::default(), now, Duration::from_secs(15)));
    }

    /// A holder whose renewal hangs stops one retry before its lease can expire, not when the
    /// client's read timeout (minutes) ends the request: until then a follower could already
    /// be reconciling beside it.
    #[tokio::test]
    async fn a_renewal_that_hangs_gives_up_before_the_lease_expires() {
        // Accepts connections and never answers, like an apiserver stuck in a restart.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((connection, _)) = listener.accept().await {
                held.push(connection);
            }
        });
        let client = Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
        let settings = LeaseSettings {
            namespace: "prospector-system".into(),
            name: "prospector-operator".into(),
            identity: "replica-a".into(),
            duration: Duration::from_secs(2),
            retry: Duration::from_millis(400),
        };
        let started = Instant::now();
        let lost = tokio::time::timeout(Duration::from_secs(20), LeaderElector::new(client, settings).hold())
            .await
            .expect("hold() returns while the apiserver hangs");
        assert!(matches!(lost, OperatorError::Leadership(_)), "{lost:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "gave up after {:?}", started.elapsed());
    }
}
