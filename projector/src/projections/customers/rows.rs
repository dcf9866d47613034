//! Writing many customer rows at once, for a rebuild: `COPY` into a table being built, or
//! one tenant's rows replaced in one transaction.

use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, PgConnection};

use super::is_plain_identifier;
use crate::views::CustomerView;

/// The columns of `customer_views`, in the order both writers below use.
const COLUMNS: &str = "tenant_id, customer_id, version, global_position, name, email, phone, \
                       address, tags, archived, created_at, updated_at";

/// Loads `views` into a table being built, with `COPY` (CSV) in chunks.
pub async fn copy_views(
    conn: &mut PgConnection,
    table: &str,
    views: &[&CustomerView],
) -> Result<u64, sqlx::Error> {
    assert!(
        is_plain_identifier(table),
        "table names are Chronicle's own"
    );
    let mut written = 0;
    for chunk in views.chunks(20_000) {
        let mut copy = conn
            .copy_in_raw(&format!(
                "COPY {table} ({COLUMNS}) FROM STDIN WITH (FORMAT csv)"
            ))
            .await?;
        let mut buffer = String::with_capacity(chunk.len() * 256);
        for view in chunk {
            csv_row(&mut buffer, view);
        }
        copy.send(buffer.into_bytes()).await?;
        written += copy.finish().await?;
    }
    Ok(written)
}

/// One CSV line of a view. Text is always quoted (so an empty string is not NULL); NULL is
/// an empty unquoted field; `tags` is an array literal, `address` JSON text.
pub fn csv_row(out: &mut String, view: &CustomerView) {
    fn quoted(out: &mut String, text: &str) {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    }
    let tags = {
        let elements: Vec<String> = view
            .tags
            .iter()
            .map(|t| format!("\"{}\"", t.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect();
        format!("{{{}}}", elements.join(","))
    };
    quoted(out, &view.tenant_id);
    out.push(',');
    out.push_str(&view.customer_id.to_string());
    out.push(',');
    out.push_str(&view.version.to_string());
    out.push(',');
    out.push_str(&view.global_position.to_string());
    out.push(',');
    quoted(out, &view.name);
    out.push(',');
    quoted(out, &view.email);
    out.push(',');
    if let Some(phone) = &view.phone {
        quoted(out, phone);
    }
    out.push(',');
    if let Some(address) = &view.address {
        quoted(out, &json!(address).to_string());
    }
    out.push(',');
    quoted(out, &tags);
    out.push(',');
    out.push(if view.archived { 't' } else { 'f' });
    out.push(',');
    out.push_str(&view.created_at.to_rfc3339());
    out.push(',');
    out.push_str(&view.updated_at.to_rfc3339());
    out.push('\n');
}

/// Replaces one tenant's rows of `table` with `views`, in the caller's transaction (which
/// has set the tenant, so row-level security confines the delete to it).
pub async fn replace_tenant_views(
    conn: &mut PgConnection,
    table: &str,
    views: &[&CustomerView],
) -> Result<u64, sqlx::Error> {
    assert!(
        is_plain_identifier(table),
        "table names are Chronicle's own"
    );
    sqlx::query(AssertSqlSafe(format!("DELETE FROM {table}")))
        .execute(&mut *conn)
        .await?;
    let mut written = 0;
    for chunk in views.chunks(2_000) {
        let rows: Vec<Value> = chunk
            .iter()
            .map(|view| {
                json!({
                    "tenant_id": view.tenant_id, "customer_id": view.customer_id,
                    "version": view.version, "global_position": view.global_position,
                    "name": view.name, "email": view.email, "phone": view.phone,
                    "address": view.address, "tags": view.tags, "archived": view.archived,
                    "created_at": view.created_at, "updated_at": view.updated_at,
                })
            })
            .collect();
        let statement = format!(
            "INSERT INTO {table} ({COLUMNS})
             SELECT {COLUMNS} FROM jsonb_to_recordset($1::jsonb) AS r(
                 tenant_id text, customer_id uuid, version bigint, global_position bigint,
                 name text, email text, phone text, address jsonb, tags text[],
                 archived boolean, created_at timestamptz, updated_at timestamptz)"
        );
        written += sqlx::query(AssertSqlSafe(statement))
            .bind(Value::Array(rows))
            .execute(&mut *conn)
            .await?
            .rows_affected();
    }
    Ok(written)
}
