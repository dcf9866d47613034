//! Readers waiting for a customer to reach a version (`?min_version`): each subscribes to
//! its customer's progress, fed by the read model's notes (`read_model::progress`, through
//! `crate::sync`), and re-reads the row only when woken. Waiting holds no database
//! connection. Waits are capped per tenant and overall, so no tenant can tie up the
//! server with waits (beyond the cap: 429 with `Retry-After`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use uuid::Uuid;

use crate::problem::ApiError;

type Key = (String, Uuid);

#[derive(Debug)]
pub struct VersionWaits {
    inner: Arc<Mutex<Waits>>,
    max_per_tenant: usize,
    max_total: usize,
}

#[derive(Debug, Default)]
struct Waits {
    /// The latest version noted for each customer someone waits on.
    watched: HashMap<Key, watch::Sender<u64>>,
    per_tenant: HashMap<String, usize>,
    total: usize,
}

/// One reader's wait: woken by progress on its customer; counted until dropped.
#[derive(Debug)]
pub struct Wait {
    progress: watch::Receiver<u64>,
    key: Key,
    inner: Arc<Mutex<Waits>>,
}

impl VersionWaits {
    pub fn new(max_per_tenant: usize, max_total: usize) -> Self {
        Self {
            inner: Arc::default(),
            max_per_tenant: max_per_tenant.max(1),
            max_total: max_total.max(1),
        }
    }

    /// Starts waiting on `customer` of `tenant`; 429 when the tenant or the server has as
    /// many waits as it takes. Subscribe before reading the row, so no note is missed
    /// between the read and the wait.
    pub fn wait(&self, tenant: &str, customer: Uuid) -> Result<Wait, ApiError> {
        let mut waits = self.inner.lock().expect("waits lock");
        let of_tenant = waits.per_tenant.get(tenant).copied().unwrap_or(0);
        if of_tenant >= self.max_per_tenant || waits.total >= self.max_total {
            return Err(ApiError::RateLimited {
                retry_after_secs: 1,
            });
        }
        *waits.per_tenant.entry(tenant.to_owned()).or_default() += 1;
        waits.total += 1;
        let key = (tenant.to_owned(), customer);
        let progress = waits
            .watched
            .entry(key.clone())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        Ok(Wait {
            progress,
            key,
            inner: self.inner.clone(),
        })
    }

    /// Customers of `tenant` reached these versions (a note of the read model).
    pub fn advanced(&self, tenant: &str, changes: &[(Uuid, u64)]) {
        let waits = self.inner.lock().expect("waits lock");
        for (customer, version) in changes {
            if let Some(progress) = waits.watched.get(&(tenant.to_owned(), *customer)) {
                progress.send_if_modified(|seen| {
                    let newer = *version > *seen;
                    *seen = (*seen).max(*version);
                    newer
                });
            }
        }
    }

    /// Wakes every wait to read its row again: notes may have been lost (the change feed
    /// reconnected).
    pub fn wake_all(&self) {
        let waits = self.inner.lock().expect("waits lock");
        for progress in waits.watched.values() {
            progress.send_modify(|_| {});
        }
    }

    /// Waits right now, for the metrics and tests.
    pub fn count(&self) -> usize {
        self.inner.lock().expect("waits lock").total
    }
}

impl Wait {
    /// Until progress is noted on this customer (or the change feed was re-established).
    pub async fn woken(&mut self) {
        // An error means the sender is gone, which cannot happen while this wait is
        // counted; treat it as a wake-up (the caller re-reads and checks its deadline).
        let _ = self.progress.changed().await;
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        let mut waits = self.inner.lock().expect("waits lock");
        waits.total = waits.total.saturating_sub(1);
        if let Some(count) = waits.per_tenant.get_mut(&self.key.0) {
            *count -= 1;
            if *count == 0 {
                waits.per_tenant.remove(&self.key.0);
            }
        }
        // This wait's receiver is still alive here: one left means it was the last.
        if waits
            .watched
            .get(&self.key)
            .is_some_and(|progress| progress.receiver_count() <= 1)
        {
            waits.watched.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_wait_wakes_on_its_customers_progress_only() {
        let waits = VersionWaits::new(10, 10);
        let (mine, other) = (Uuid::now_v7(), Uuid::now_v7());
        let mut wait = waits.wait("acme", mine).unwrap();
        waits.advanced("acme", &[(other, 3)]);
        waits.advanced("globex", &[(mine, 3)]);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), wait.woken())
                .await
                .is_err(),
            "not woken by another customer or tenant"
        );
        waits.advanced("acme", &[(mine, 2)]);
        tokio::time::timeout(Duration::from_secs(1), wait.woken())
            .await
            .expect("woken by its own progress");
        drop(wait);
        assert_eq!(waits.count(), 0);
        assert!(waits.inner.lock().unwrap().watched.is_empty(), "forgotten");
    }

    #[test]
    fn waits_are_capped_per_tenant_and_overall() {
        let waits = VersionWaits::new(2, 3);
        let a1 = waits.wait("acme", Uuid::now_v7()).unwrap();
        let _a2 = waits.wait("acme", Uuid::now_v7()).unwrap();
        assert!(matches!(
            waits.wait("acme", Uuid::now_v7()),
            Err(ApiError::RateLimited { .. })
        ));
        let _g1 = waits.wait("globex", Uuid::now_v7()).unwrap();
        assert!(
            waits.wait("initech", Uuid::now_v7()).is_err(),
            "three in all"
        );
        drop(a1);
        assert!(waits.wait("acme", Uuid::now_v7()).is_ok());
    }
}
