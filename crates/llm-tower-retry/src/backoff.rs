//! The wait before a retry, during which the discarded response body is drained.

use std::time::Duration;

use bytes::Buf;
use http_body::Body;
use http_body_util::BodyExt;

use crate::DRAIN_LIMIT;
use crate::body::ResponseBody;

/// Sleeps `delay`, draining the discarded response body meanwhile (at most [`DRAIN_LIMIT`]
/// bytes, and never past the delay) so its connection can be reused.
pub(crate) async fn backoff<RB>(delay: Duration, discarded: Option<ResponseBody<RB>>)
where
    RB: Body,
{
    {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        if let Some(body) = discarded {
            let drain = async {
                let mut body = std::pin::pin!(body);
                let mut read = 0;
                while read <= DRAIN_LIMIT {
                    match body.as_mut().frame().await {
                        Some(Ok(frame)) => read += frame.data_ref().map_or(0, Buf::remaining),
                        _ => break,
                    }
                }
            };
            tokio::select! {
                biased;
                () = drain => {}
                () = &mut sleep => return,
            }
        }
        sleep.await;
    }
}
