//! Development credentials stay in development. `./dev` runs everything with the passwords
//! its roles are created with (each the role's own name) and a known bootstrap admin
//! password; a process started with any of those refuses to run unless development mode is
//! on (`CHRONICLE_DEV_MODE=true`, which `./dev` sets), so a deployment cannot go live with
//! them by accident.

/// The bootstrap admin password `./dev up` uses.
pub const DEV_ADMIN_PASSWORD: &str = "dev-admin-password";

/// Why a process refuses to start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} uses a development password; set CHRONICLE_DEV_MODE=true to allow it (development only)"
)]
pub struct DevelopmentSecret {
    pub what: String,
}

/// Refuses, unless `dev_mode`, a database URL whose password is its user name.
pub fn check_database_url(dev_mode: bool, what: &str, url: &str) -> Result<(), DevelopmentSecret> {
    if dev_mode || !is_development_url(url) {
        return Ok(());
    }
    Err(DevelopmentSecret {
        what: what.to_owned(),
    })
}

/// Refuses, unless `dev_mode`, the development bootstrap admin password.
pub fn check_password(dev_mode: bool, what: &str, password: &str) -> Result<(), DevelopmentSecret> {
    if dev_mode || password != DEV_ADMIN_PASSWORD {
        return Ok(());
    }
    Err(DevelopmentSecret {
        what: what.to_owned(),
    })
}

/// `postgres://user:password@...` with `password == user`.
fn is_development_url(url: &str) -> bool {
    let Some(rest) = url.split_once("://").map(|(_, rest)| rest) else {
        return false;
    };
    let Some((credentials, _)) = rest.split_once('@') else {
        return false;
    };
    match credentials.split_once(':') {
        Some((user, password)) => !user.is_empty() && user == password,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_credentials_need_development_mode() {
        let dev = "postgres://chronicle_app:chronicle_app@127.0.0.1:5432/chronicle";
        let real = "postgres://chronicle_app:s3cr3t-from-vault@db:5432/chronicle";
        assert!(check_database_url(false, "DATABASE_URL", dev).is_err());
        assert!(check_database_url(true, "DATABASE_URL", dev).is_ok());
        assert!(check_database_url(false, "DATABASE_URL", real).is_ok());
        assert!(check_database_url(false, "x", "postgres://db/chronicle").is_ok());
        assert!(check_password(false, "bootstrap", DEV_ADMIN_PASSWORD).is_err());
        assert!(check_password(true, "bootstrap", DEV_ADMIN_PASSWORD).is_ok());
        assert!(check_password(false, "bootstrap", "a long real one").is_ok());
    }
}
