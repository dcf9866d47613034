//! The relay's checkpoint: the position of the last event Kafka acknowledged.

use sqlx::PgPool;

use event_store::LogPosition;

/// The checkpoint of `relay_name`; the start of the log if it never published.
pub async fn load(pool: &PgPool, relay_name: &str) -> Result<LogPosition, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT transaction_id::text AS "transaction_id!", global_position
           FROM relay_checkpoints WHERE relay_name = $1"#,
        relay_name
    )
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(LogPosition::START);
    };
    Ok(LogPosition {
        transaction_id: row
            .transaction_id
            .parse()
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        global_position: u64::try_from(row.global_position)
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
    })
}

/// Records `position` as published. Never moves the checkpoint back, so a relay that
/// lost its lock but finished a late batch cannot undo the active relay's progress.
pub async fn save(
    pool: &PgPool,
    relay_name: &str,
    position: LogPosition,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
        INSERT INTO relay_checkpoints (relay_name, transaction_id, global_position)
        VALUES ($1, $2::text::xid8, $3)
        ON CONFLICT (relay_name) DO UPDATE
            SET transaction_id = EXCLUDED.transaction_id,
                global_position = EXCLUDED.global_position,
                updated_at = now()
            WHERE (relay_checkpoints.transaction_id, relay_checkpoints.global_position)
                < (EXCLUDED.transaction_id, EXCLUDED.global_position)
        "#,
        relay_name,
        position.transaction_id.to_string(),
        i64::try_from(position.global_position).expect("positions fit in bigint"),
    )
    .execute(pool)
    .await?;
    Ok(())
}
