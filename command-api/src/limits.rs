//! Rate limits (token buckets, by `governor`): failed logins, sign-ups per client network,
//! and writes per tenant so one tenant's flood cannot starve another's requests.
//!
//! Logins are throttled on *failures* only, per client network and per account seen from
//! that network. A correct password is never counted, and an attacker guessing from
//! elsewhere spends only their own network's budget, so nobody can lock a real user out by
//! failing on purpose. IPv6 clients are keyed by their /64 (one subscriber's prefix, which
//! they can vary at will inside it); IPv4 by address. A distributed guesser is bounded by
//! the per-network budget times their networks, and every guess costs an Argon2 hash.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::config::ApiConfig;
use crate::problem::ApiError;

#[derive(Debug)]
pub struct Limits {
    failed_logins_by_network: FailureBudget<IpAddr>,
    failed_logins_by_account: FailureBudget<(String, IpAddr)>,
    writes_by_tenant: DefaultKeyedRateLimiter<String>,
    signups_by_network: DefaultKeyedRateLimiter<IpAddr>,
}

fn at_least_one(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).expect("at least one")
}

impl Limits {
    pub fn from_config(config: &ApiConfig) -> Self {
        Self {
            failed_logins_by_network: FailureBudget::per_minute(
                config.login_per_address_per_minute,
            ),
            failed_logins_by_account: FailureBudget::per_minute(
                config.login_per_account_per_minute,
            ),
            writes_by_tenant: DefaultKeyedRateLimiter::keyed(
                Quota::per_second(at_least_one(config.tenant_writes_per_second))
                    .allow_burst(at_least_one(config.tenant_write_burst)),
            ),
            signups_by_network: DefaultKeyedRateLimiter::keyed(Quota::per_hour(at_least_one(
                config.signup_per_address_per_hour,
            ))),
        }
    }

    /// Before a login is checked: refused (429) while its network, or this account from
    /// its network, has used up its failures. `account` must already be bounded and
    /// normalised (it becomes a key).
    pub fn login_allowed(&self, address: IpAddr, account: &str) -> Result<(), ApiError> {
        let network = client_network(address);
        self.failed_logins_by_network.allowed(&network)?;
        self.failed_logins_by_account
            .allowed(&(account.to_owned(), network))
    }

    /// After a login failed: spends one failure of each budget.
    pub fn login_failed(&self, address: IpAddr, account: &str) {
        let network = client_network(address);
        self.failed_logins_by_network.spend(network);
        self.failed_logins_by_account
            .spend((account.to_owned(), network));
    }

    /// A sign-up from `address` (every attempt counts: each one makes a tenant).
    pub fn signup(&self, address: IpAddr) -> Result<(), ApiError> {
        check(&self.signups_by_network, &client_network(address))
    }

    pub fn write(&self, tenant: &str) -> Result<(), ApiError> {
        check(&self.writes_by_tenant, &tenant.to_owned())
    }

    /// Forgets keys whose buckets are full again, so memory stays bounded.
    pub fn forget_idle(&self) {
        self.failed_logins_by_network.forget_idle();
        self.failed_logins_by_account.forget_idle();
        self.writes_by_tenant.retain_recent();
        self.signups_by_network.retain_recent();
    }
}

/// The key a client address is throttled by: IPv4 addresses as they are (IPv4-mapped IPv6
/// included), IPv6 addresses by their /64.
pub fn client_network(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
    }
}

/// A budget of failures per key. Governor's buckets have no "would this pass?" question,
/// so a key whose budget is spent is remembered as blocked until its bucket refills one
/// cell: checking costs nothing, and only a failure spends.
#[derive(Debug)]
struct FailureBudget<K: Hash + Eq + Clone> {
    failures: FailureLimiter<K>,
    blocked_until: DashMap<K, Instant>,
}

type FailureLimiter<K> = governor::RateLimiter<
    K,
    governor::state::keyed::DefaultKeyedStateStore<K>,
    DefaultClock,
    governor::middleware::StateInformationMiddleware,
>;

impl<K: Hash + Eq + Clone> FailureBudget<K> {
    fn per_minute(failures: u32) -> Self {
        Self {
            failures: governor::RateLimiter::keyed(Quota::per_minute(at_least_one(failures)))
                .with_middleware::<governor::middleware::StateInformationMiddleware>(),
            blocked_until: DashMap::new(),
        }
    }

    fn allowed(&self, key: &K) -> Result<(), ApiError> {
        let Some(until) = self.blocked_until.get(key).map(|until| *until) else {
            return Ok(());
        };
        let now = Instant::now();
        if until <= now {
            self.blocked_until.remove_if(key, |_, until| *until <= now);
            return Ok(());
        }
        Err(rate_limited(until - now))
    }

    fn spend(&self, key: K) {
        let blocked_for = match self.failures.check_key(&key) {
            // The last failure of the budget: block now, so that the next attempt is
            // refused before it costs a hash.
            Ok(state) if state.remaining_burst_capacity() == 0 => {
                state.quota().replenish_interval()
            }
            Ok(_) => return,
            Err(not_until) => not_until.wait_time_from(DefaultClock::default().now()),
        };
        self.blocked_until.insert(key, Instant::now() + blocked_for);
    }

    fn forget_idle(&self) {
        self.failures.retain_recent();
        let now = Instant::now();
        self.blocked_until.retain(|_, until| *until > now);
    }
}

fn rate_limited(wait: Duration) -> ApiError {
    ApiError::RateLimited {
        retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
    }
}

fn check<K: Hash + Eq + Clone>(
    limiter: &DefaultKeyedRateLimiter<K>,
    key: &K,
) -> Result<(), ApiError> {
    limiter
        .check_key(key)
        .map_err(|not_until| rate_limited(not_until.wait_time_from(DefaultClock::default().now())))
}
