//! The API call log (调用日志): one JSON line per request — operation, account, status,
//! duration, error and, for writes, the request body with secrets masked — written by a
//! background task to `<data_dir>/logs/api-calls.jsonl` so requests never wait on it.

use std::path::Path;

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

#[derive(Clone)]
pub struct CallLog {
    tx: mpsc::Sender<String>,
}

const SECRET_FIELDS: [&str; 5] = [
    "password",
    "current_password",
    "new_password",
    "secret_access_key",
    "token",
];

/// Mask secret fields of a JSON body; non-JSON bodies are summarised by size.
pub fn redact(body: &[u8]) -> Value {
    if body.is_empty() {
        return Value::Null;
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(mut v) => {
            mask(&mut v);
            v
        }
        Err(_) => Value::String(format!("<{} bytes, not JSON>", body.len())),
    }
}

fn mask(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                if SECRET_FIELDS.contains(&k.as_str()) {
                    *val = Value::String("***".into());
                } else {
                    mask(val);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(mask),
        _ => {}
    }
}

impl CallLog {
    pub async fn open(dir: &Path) -> anyhow::Result<CallLog> {
        tokio::fs::create_dir_all(dir).await?;
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("api-calls.jsonl"))
            .await?;
        let (tx, mut rx) = mpsc::channel::<String>(10_000);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = first;
                while let Ok(more) = rx.try_recv() {
                    batch.push_str(&more);
                }
                if let Err(e) = file.write_all(batch.as_bytes()).await {
                    tracing::warn!(error = %e, "cannot write the API call log");
                }
                let _ = file.flush().await;
            }
        });
        Ok(CallLog { tx })
    }

    pub fn record(&self, entry: Value) {
        let mut line = entry.to_string();
        line.push('\n');
        if self.tx.try_send(line).is_err() {
            tracing::warn!("API call log is falling behind; an entry was dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn masks_secrets_at_any_depth() {
        let v = super::redact(br#"{"name":"a","password":"x","inner":[{"token":"t"}]}"#);
        assert_eq!(
            v.to_string(),
            r#"{"inner":[{"token":"***"}],"name":"a","password":"***"}"#
        );
        assert_eq!(
            super::redact(b"\xff"),
            serde_json::json!("<1 bytes, not JSON>")
        );
    }
}
