//! Rate limits (token buckets, by `governor`): login attempts per client address and per
//! account, and writes per tenant, so one tenant's flood cannot starve another's requests.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::config::ApiConfig;
use crate::problem::ApiError;

#[derive(Debug)]
pub struct Limits {
    login_by_address: DefaultKeyedRateLimiter<IpAddr>,
    login_by_account: DefaultKeyedRateLimiter<String>,
    writes_by_tenant: DefaultKeyedRateLimiter<String>,
}

fn at_least_one(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).expect("at least one")
}

impl Limits {
    pub fn from_config(config: &ApiConfig) -> Self {
        Self {
            login_by_address: DefaultKeyedRateLimiter::keyed(Quota::per_minute(at_least_one(
                config.login_per_address_per_minute,
            ))),
            login_by_account: DefaultKeyedRateLimiter::keyed(Quota::per_minute(at_least_one(
                config.login_per_account_per_minute,
            ))),
            writes_by_tenant: DefaultKeyedRateLimiter::keyed(
                Quota::per_second(at_least_one(config.tenant_writes_per_second))
                    .allow_burst(at_least_one(config.tenant_write_burst)),
            ),
        }
    }

    pub fn login(&self, address: IpAddr, account: &str) -> Result<(), ApiError> {
        check(&self.login_by_address, &address)?;
        check(&self.login_by_account, &account.to_owned())
    }

    pub fn write(&self, tenant: &str) -> Result<(), ApiError> {
        check(&self.writes_by_tenant, &tenant.to_owned())
    }

    /// Forgets keys whose buckets are full again, so memory stays bounded.
    pub fn forget_idle(&self) {
        self.login_by_address.retain_recent();
        self.login_by_account.retain_recent();
        self.writes_by_tenant.retain_recent();
    }
}

fn check<K: Hash + Eq + Clone>(
    limiter: &DefaultKeyedRateLimiter<K>,
    key: &K,
) -> Result<(), ApiError> {
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        ApiError::RateLimited {
            retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
        }
    })
}
