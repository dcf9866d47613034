//! PostgreSQL generations of a projection's table: `<live>` (e.g. `customer_views`) in
//! service, the table being built `<live>_<generation>`, and retired ones under their
//! generation's name.
//! Built by the owner role (the app role may not create tables) without row-level security
//! (COPY refuses tables with it), which is then copied from the live table with its
//! policies and grants before the swap: two renames in one transaction.

use sqlx::{AssertSqlSafe, PgConnection, PgPool, Row};

use super::generation::{GenerationMeta, Retired, beyond_keep};
use crate::projections::customers::is_plain_identifier;

pub fn table_of(live: &str, generation: &str) -> String {
    format!("{live}_{generation}")
}

async fn execute(conn: &mut PgConnection, statement: String) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(AssertSqlSafe(statement))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Creates the empty table a rebuild writes into, shaped like the live one.
pub async fn create_build_table(
    pool: &PgPool,
    live: &str,
    generation: &str,
) -> Result<String, sqlx::Error> {
    let table = table_of(live, generation);
    assert!(
        is_plain_identifier(&table),
        "generation names are Chronicle's own"
    );
    let mut conn = pool.acquire().await?;
    // Columns, defaults, constraints and indexes; not policies or grants (added at finish).
    execute(
        &mut conn,
        format!("CREATE TABLE {table} (LIKE {live} INCLUDING ALL)"),
    )
    .await?;
    set_meta(
        &mut conn,
        &table,
        &GenerationMeta {
            generation: generation.to_owned(),
            retired: None,
        },
    )
    .await?;
    Ok(table)
}

/// Gives a loaded table the live table's row-level security, policies and grants.
pub async fn finish_build_table(pool: &PgPool, live: &str, table: &str) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let flags = sqlx::query(
        "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = $1::regclass",
    )
    .bind(live)
    .fetch_one(&mut *tx)
    .await?;
    if flags.get::<bool, _>(0) {
        execute(
            &mut tx,
            format!("ALTER TABLE {table} ENABLE ROW LEVEL SECURITY"),
        )
        .await?;
    }
    if flags.get::<bool, _>(1) {
        execute(
            &mut tx,
            format!("ALTER TABLE {table} FORCE ROW LEVEL SECURITY"),
        )
        .await?;
    }
    let policies = sqlx::query(
        "SELECT quote_ident(policyname), permissive, cmd,
                array_to_string(ARRAY(SELECT quote_ident(r) FROM unnest(roles) AS r), ', '),
                qual, with_check
         FROM pg_policies WHERE schemaname = current_schema() AND tablename = $1",
    )
    .bind(live)
    .fetch_all(&mut *tx)
    .await?;
    for policy in policies {
        let (name, permissive, command, roles): (String, String, String, String) =
            (policy.get(0), policy.get(1), policy.get(2), policy.get(3));
        let using: Option<String> = policy.get(4);
        let check: Option<String> = policy.get(5);
        let mut statement =
            format!("CREATE POLICY {name} ON {table} AS {permissive} FOR {command} TO {roles}");
        if let Some(using) = using {
            statement.push_str(&format!(" USING ({using})"));
        }
        if let Some(check) = check {
            statement.push_str(&format!(" WITH CHECK ({check})"));
        }
        execute(&mut tx, statement).await?;
    }
    let grants = sqlx::query(
        "SELECT quote_ident(grantee), string_agg(privilege_type, ', ')
         FROM information_schema.role_table_grants
         WHERE table_schema = current_schema() AND table_name = $1 AND grantee <> current_user
         GROUP BY grantee",
    )
    .bind(live)
    .fetch_all(&mut *tx)
    .await?;
    for grant in grants {
        let (grantee, privileges): (String, String) = (grant.get(0), grant.get(1));
        execute(
            &mut tx,
            format!("GRANT {privileges} ON {table} TO {grantee}"),
        )
        .await?;
    }
    tx.commit().await?;
    let mut conn = pool.acquire().await?;
    execute(&mut conn, format!("ANALYZE {table}")).await
}

/// Renames `table` to `live` and the live table to its generation's name, in one
/// transaction; the one swapped out is marked retired. Retries while readers hold locks
/// (a short lock timeout keeps the swap from queueing every reader behind it).
pub async fn swap(
    pool: &PgPool,
    live: &str,
    table: &str,
    retired: Retired,
) -> Result<String, sqlx::Error> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match try_swap(pool, live, table, retired).await {
            Err(sqlx::Error::Database(error))
                if error.code().as_deref() == Some("55P03") && attempt < 20 =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
            }
            other => return other,
        }
    }
}

async fn try_swap(
    pool: &PgPool,
    live: &str,
    table: &str,
    retired: Retired,
) -> Result<String, sqlx::Error> {
    let mut tx = pool.begin().await?;
    execute(&mut tx, "SET LOCAL lock_timeout = '2s'".to_owned()).await?;
    let mut live_meta = meta_of(&mut tx, live, live).await?;
    let retired_table = table_of(live, &live_meta.generation);
    let mut new_meta = meta_of(&mut tx, live, table).await?;
    execute(
        &mut tx,
        format!("ALTER TABLE {live} RENAME TO {retired_table}"),
    )
    .await?;
    execute(&mut tx, format!("ALTER TABLE {table} RENAME TO {live}")).await?;
    live_meta.retired = Some(retired);
    set_meta(&mut tx, &retired_table, &live_meta).await?;
    new_meta.retired = None;
    set_meta(&mut tx, live, &new_meta).await?;
    tx.commit().await?;
    Ok(retired_table)
}

/// Every generation's table but the live one, with its record.
pub async fn generations(
    pool: &PgPool,
    live: &str,
) -> Result<Vec<(String, GenerationMeta)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT c.relname::text, obj_description(c.oid, 'pg_class')
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relname LIKE $1
         ORDER BY c.relname",
    )
    .bind(format!("{live}\\_%"))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let table: String = row.get(0);
            let comment: Option<String> = row.get(1);
            let meta = comment
                .and_then(|c| serde_json::from_str(&c).ok())
                .unwrap_or_else(|| GenerationMeta {
                    generation: table.trim_start_matches(&format!("{live}_")).to_owned(),
                    retired: None,
                });
            (table, meta)
        })
        .collect())
}

/// The most recently retired table: where a rollback goes.
pub async fn rollback_target(
    pool: &PgPool,
    live: &str,
) -> Result<Option<(String, Retired)>, sqlx::Error> {
    Ok(generations(pool, live)
        .await?
        .into_iter()
        .filter_map(|(table, meta)| meta.retired.map(|retired| (table, retired)))
        .max_by_key(|(_, retired)| retired.at_ms))
}

/// Drops retired tables beyond the `keep` most recent (and failed builds). Returns them.
pub async fn prune(pool: &PgPool, live: &str, keep: usize) -> Result<Vec<String>, sqlx::Error> {
    let retired = generations(pool, live)
        .await?
        .into_iter()
        .map(|(table, meta)| (table, meta.retired.map(|r| r.at_ms)))
        .collect();
    let doomed = beyond_keep(retired, keep);
    for table in &doomed {
        drop_table(pool, live, table).await?;
    }
    Ok(doomed)
}

pub async fn drop_table(pool: &PgPool, live: &str, table: &str) -> Result<(), sqlx::Error> {
    assert!(is_plain_identifier(table) && table != live);
    let mut conn = pool.acquire().await?;
    execute(&mut conn, format!("DROP TABLE IF EXISTS {table}")).await
}

async fn meta_of(
    conn: &mut PgConnection,
    live: &str,
    table: &str,
) -> Result<GenerationMeta, sqlx::Error> {
    let comment: Option<String> =
        sqlx::query_scalar("SELECT obj_description($1::regclass, 'pg_class')")
            .bind(table)
            .fetch_one(conn)
            .await?;
    Ok(comment
        .and_then(|c| serde_json::from_str(&c).ok())
        .unwrap_or_else(|| GenerationMeta {
            generation: if table == live {
                "v1".to_owned()
            } else {
                table.trim_start_matches(&format!("{live}_")).to_owned()
            },
            retired: None,
        }))
}

async fn set_meta(
    conn: &mut PgConnection,
    table: &str,
    meta: &GenerationMeta,
) -> Result<(), sqlx::Error> {
    let text = serde_json::to_string(meta).expect("metadata serializes");
    // COMMENT takes a literal, not a parameter: quote it.
    execute(
        conn,
        format!("COMMENT ON TABLE {table} IS '{}'", text.replace('\'', "''")),
    )
    .await
}
