//! A thin layer over the `elasticsearch` client: JSON in, JSON out, errors typed.

use elasticsearch::Elasticsearch;
use elasticsearch::http::Url;
use elasticsearch::http::headers::HeaderMap;
use elasticsearch::http::request::{JsonBody, NdBody};
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use serde_json::Value;

/// The HTTP method of a request, re-exported so callers need not name the client crate.
pub use elasticsearch::http::Method;

#[derive(Debug, thiserror::Error)]
pub enum EsError {
    #[error("elasticsearch unreachable: {0}")]
    Transport(#[from] elasticsearch::Error),
    #[error("elasticsearch answered {status} to {what}: {body}")]
    Status {
        what: String,
        status: u16,
        body: String,
    },
    #[error("invalid ELASTICSEARCH_URL: {0}")]
    Url(String),
}

impl EsError {
    /// Elasticsearch away, overloaded or timing out: worth retrying soon.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport(_) => true,
            Self::Status { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            Self::Url(_) => false,
        }
    }

    /// The index (or alias) does not exist: the projector has not laid the indices out
    /// yet, or a replay is swapping them.
    pub fn is_missing_index(&self) -> bool {
        matches!(self, Self::Status { status: 404, body, .. } if body.contains("index_not_found_exception"))
    }
}

#[derive(Debug, Clone)]
pub struct Es {
    client: Elasticsearch,
}

impl Es {
    /// A client whose requests give up after 30 s (bulk writes of a replay take a while).
    pub fn new(url: &str) -> Result<Self, EsError> {
        Self::with_timeout(url, std::time::Duration::from_secs(30))
    }

    /// A client whose requests give up after `timeout`: a node that stopped answering is
    /// an error the caller can act on (a 503, a retry), not a request hanging forever.
    pub fn with_timeout(url: &str, timeout: std::time::Duration) -> Result<Self, EsError> {
        let url = Url::parse(url).map_err(|e| EsError::Url(e.to_string()))?;
        let transport = TransportBuilder::new(SingleNodeConnectionPool::new(url))
            .timeout(timeout)
            .disable_proxy()
            .build()
            .map_err(|e| EsError::Url(e.to_string()))?;
        Ok(Self {
            client: Elasticsearch::new(transport),
        })
    }

    /// Sends a JSON request; any status but 2xx is an error, except those in `tolerated`.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        tolerated: &[u16],
    ) -> Result<(u16, Value), EsError> {
        let response = self
            .client
            .send(
                method,
                path,
                HeaderMap::new(),
                Option::<&()>::None,
                body.map(JsonBody::new),
                None,
            )
            .await?;
        let status = response.status_code().as_u16();
        let text = response.text().await?;
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        if (200..300).contains(&status) || tolerated.contains(&status) {
            Ok((status, json))
        } else {
            Err(EsError::Status {
                what: format!("{method:?} {path}"),
                status,
                body: text.chars().take(2000).collect(),
            })
        }
    }

    pub async fn get(&self, path: &str, tolerated: &[u16]) -> Result<(u16, Value), EsError> {
        self.request(Method::Get, path, None, tolerated).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Result<Value, EsError> {
        Ok(self.request(Method::Put, path, Some(body), &[]).await?.1)
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<Value, EsError> {
        Ok(self.request(Method::Post, path, Some(body), &[]).await?.1)
    }

    /// Makes everything indexed so far searchable now (instead of at the next refresh).
    pub async fn refresh(&self, target: &str) -> Result<(), EsError> {
        self.request(Method::Post, &format!("/{target}/_refresh"), None, &[])
            .await
            .map(|_| ())
    }

    /// Every hit of `body` (which must sort by fields that order the hits totally) on
    /// `target`, paged with `search_after`; no hits when the target does not exist.
    pub async fn search_all(&self, target: &str, mut body: Value) -> Result<Vec<Value>, EsError> {
        const PAGE: usize = 5000;
        body["size"] = PAGE.into();
        body["track_total_hits"] = false.into();
        let path = format!("/{target}/_search");
        let mut all = Vec::new();
        loop {
            let (status, answer) = self
                .request(Method::Post, &path, Some(body.clone()), &[404])
                .await?;
            if status == 404 {
                return Ok(all);
            }
            let hits = answer["hits"]["hits"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let last_page = hits.len() < PAGE;
            if let Some(last) = hits.last() {
                body["search_after"] = last["sort"].clone();
            }
            all.extend(hits);
            if last_page {
                return Ok(all);
            }
        }
    }

    /// `_bulk` with the given action and document lines; returns the response's items.
    /// `refresh`: make what it wrote searchable before answering (a refresh of the shards
    /// it touched) instead of at the next periodic refresh.
    pub async fn bulk(&self, lines: Vec<Value>, refresh: bool) -> Result<Vec<Value>, EsError> {
        let path = if refresh {
            "/_bulk?refresh=true"
        } else {
            "/_bulk"
        };
        let body = NdBody::new(lines.into_iter().map(JsonBody::new).collect::<Vec<_>>());
        let response = self
            .client
            .send(
                Method::Post,
                path,
                HeaderMap::new(),
                Option::<&()>::None,
                Some(body),
                None,
            )
            .await?;
        let status = response.status_code().as_u16();
        let text = response.text().await?;
        if !(200..300).contains(&status) {
            return Err(EsError::Status {
                what: "POST /_bulk".to_owned(),
                status,
                body: text.chars().take(2000).collect(),
            });
        }
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(json["items"].as_array().cloned().unwrap_or_default())
    }
}
