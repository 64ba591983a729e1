//! Reading a request body whole, within `server.max_body_bytes` (enforced
//! by the body-limit layer; here its error becomes ours).

use axum::body::Body;
use bytes::Bytes;

pub enum BodyError {
    TooLarge,
    Unreadable,
}

pub async fn read(body: Body) -> Result<Bytes, BodyError> {
    read_limited(body, usize::MAX).await
}

/// Like [`read`], with a tighter limit of the caller's (a provider's).
pub async fn read_limited(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = source {
            if err.is::<http_body_util::LengthLimitError>() {
                return BodyError::TooLarge;
            }
            source = err.source();
        }
        BodyError::Unreadable
    })
}

impl From<BodyError> for crate::checkout::GatewayError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::TooLarge => Self::BodyTooLarge,
            BodyError::Unreadable => Self::BodyUnreadable,
        }
    }
}
