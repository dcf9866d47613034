//! Read-model progress: when the customers projection commits rows, it says which customers
//! reached which version, on one PostgreSQL channel, in the same transaction (so the note
//! arrives exactly when the rows are readable). A reader waiting for a version
//! (`GET /v1/customers/{id}?min_version=N`) wakes on the note for its customer instead of
//! polling the table, and holds no database connection while it waits.

use uuid::Uuid;

/// The channel the notes go out on.
pub const CHANNEL: &str = "chronicle_read_model";

/// PostgreSQL takes notification payloads under 8000 bytes.
const MAX_PAYLOAD: usize = 7_900;

/// The notes for `changes` (customer id, version) of `tenant`: `tenant id:version id:version
/// ...`, split to fit.
pub fn payloads(tenant: &str, changes: &[(Uuid, u64)]) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut current = String::from(tenant);
    for (id, version) in changes {
        let entry = format!(" {id}:{version}");
        if current.len() + entry.len() > MAX_PAYLOAD {
            payloads.push(std::mem::replace(&mut current, String::from(tenant)));
        }
        current.push_str(&entry);
    }
    if current.len() > tenant.len() {
        payloads.push(current);
    }
    payloads
}

/// A note read back: the tenant and its (customer id, version) changes. `None` when it is
/// not a note of this format.
pub fn parse(payload: &str) -> Option<(&str, Vec<(Uuid, u64)>)> {
    let mut parts = payload.split(' ');
    let tenant = parts.next().filter(|t| !t.is_empty())?;
    let changes = parts
        .map(|entry| {
            let (id, version) = entry.split_once(':')?;
            Some((Uuid::parse_str(id).ok()?, version.parse().ok()?))
        })
        .collect::<Option<Vec<_>>>()?;
    Some((tenant, changes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_round_trip_and_split_under_the_payload_limit() {
        let changes: Vec<(Uuid, u64)> = (0..500).map(|v| (Uuid::now_v7(), v)).collect();
        let notes = payloads("acme", &changes);
        assert!(notes.len() > 1);
        assert!(notes.iter().all(|n| n.len() <= MAX_PAYLOAD));
        let read: Vec<(Uuid, u64)> = notes
            .iter()
            .flat_map(|n| {
                let (tenant, changes) = parse(n).unwrap();
                assert_eq!(tenant, "acme");
                changes
            })
            .collect();
        assert_eq!(read, changes);
        assert!(payloads("acme", &[]).is_empty());
        assert!(parse("acme nonsense").is_none());
    }
}
