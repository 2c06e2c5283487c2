//! The replayable request body: buffered once, capped, cheap to clone.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::Request;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::error::{BoxError, Error, ErrorKind};

/// How much of an upstream's error response body llm-tower reads ahead: to judge it before its
/// head goes out, to check it for an echoed key, or to drain it so its connection is reused.
/// Error bodies are small; a longer one streams through as it comes.
pub const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// Default cap for buffered request bodies: 32 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// A fully buffered request body. Cloning is cheap (reference counted) and every clone
/// yields the same bytes, so each attempt sends an identical body.
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::BodyExt;
/// use llm_tower_core::BufferedBody;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let body = BufferedBody::from(Bytes::from_static(b"{}"));
/// let replay = body.clone();
/// assert_eq!(body.collect().await.unwrap().to_bytes(), "{}");
/// assert_eq!(replay.collect().await.unwrap().to_bytes(), "{}");
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct BufferedBody {
    /// The bytes not sent yet.
    data: Data,
}

#[derive(Clone, Debug, Default)]
enum Data {
    #[default]
    Empty,
    One(Bytes),
    /// A body whose `model` was rewritten: the bytes before, the new value, the bytes after,
    /// each sent as it is (no copy), from `next` on.
    Spliced {
        pieces: Arc<[Bytes; 3]>,
        next: usize,
    },
}

impl BufferedBody {
    /// A body of these bytes.
    pub fn new(data: Bytes) -> Self {
        Self {
            data: if data.is_empty() {
                Data::Empty
            } else {
                Data::One(data)
            },
        }
    }

    /// A body of these pieces, one after the other, each sent without a copy: a body with a
    /// few bytes replaced or inserted, the rest of it shared.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use llm_tower_core::BufferedBody;
    ///
    /// let body = Bytes::from_static(br#"{"stream":true}"#);
    /// let spliced = BufferedBody::spliced([body.slice(..1), Bytes::from_static(br#""n":1,"#), body.slice(1..)]);
    /// assert_eq!(spliced.to_bytes(), r#"{"n":1,"stream":true}"#);
    /// ```
    pub fn spliced(pieces: [Bytes; 3]) -> Self {
        Self {
            data: Data::Spliced {
                pieces: Arc::new(pieces),
                next: 0,
            },
        }
    }

    /// The bytes not yet read from this instance, in one piece (copied only for a body
    /// whose `model` was rewritten).
    ///
    /// ```
    /// use bytes::Bytes;
    /// use llm_tower_core::BufferedBody;
    ///
    /// assert_eq!(BufferedBody::from(Bytes::from_static(b"{}")).to_bytes(), "{}");
    /// ```
    pub fn to_bytes(&self) -> Bytes {
        match &self.data {
            Data::Empty => Bytes::new(),
            Data::One(data) => data.clone(),
            Data::Spliced { pieces, next } => pieces[*next..].concat().into(),
        }
    }

    /// The number of bytes not yet read from this instance.
    pub fn len(&self) -> usize {
        match &self.data {
            Data::Empty => 0,
            Data::One(data) => data.len(),
            Data::Spliced { pieces, next } => pieces[*next..].iter().map(Bytes::len).sum(),
        }
    }

    /// Whether every byte was read (or there were none).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<Bytes> for BufferedBody {
    fn from(data: Bytes) -> Self {
        Self::new(data)
    }
}

impl Body for BufferedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let data = &mut self.get_mut().data;
        let frame = match data {
            Data::Empty => None,
            Data::One(_) => match std::mem::take(data) {
                Data::One(bytes) => Some(bytes),
                _ => unreachable!("matched above"),
            },
            Data::Spliced { pieces, next } => {
                let piece = pieces[*next..].iter().position(|p| !p.is_empty());
                let frame = piece.map(|offset| pieces[*next + offset].clone());
                *next = piece.map_or(3, |offset| *next + offset + 1);
                if *next == 3 {
                    *data = Data::Empty;
                }
                frame
            }
        };
        Poll::Ready(frame.map(|bytes| Ok(Frame::data(bytes))))
    }

    fn is_end_stream(&self) -> bool {
        self.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len() as u64)
    }
}

/// Reads a whole body, failing with [`ErrorKind::BodyTooLarge`] as soon as it exceeds `limit`
/// bytes (a body of exactly `limit` bytes is accepted).
pub async fn buffer_body<B>(body: B, limit: usize) -> Result<BufferedBody, Error>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let hint = body.size_hint();
    if hint.lower() > limit as u64 {
        return Err(Error::body_too_large(limit));
    }
    // The bytes are gathered as they come, each frame dropped once copied: a body never
    // takes twice its size while it is read (as a list of frames copied into one buffer
    // at the end would). A body of one frame is kept as it came, without a copy.
    let expected = hint.exact().map_or(0, |len| len as usize);
    let mut body = std::pin::pin!(Limited::new(body, limit));
    let mut first: Option<Bytes> = None;
    let mut gathered: Option<BytesMut> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| read_error(&*err, limit))?;
        let Ok(mut data) = frame.into_data() else {
            continue; // Trailers of a request are not forwarded.
        };
        // Without a copy when the body's data are `Bytes` already.
        let data = data.copy_to_bytes(data.remaining());
        match (&first, &mut gathered) {
            (None, _) => first = Some(data),
            (Some(first), None) => {
                let mut buffer = BytesMut::with_capacity(expected.max(first.len() + data.len()));
                buffer.extend_from_slice(first);
                buffer.extend_from_slice(&data);
                gathered = Some(buffer);
            }
            (Some(_), Some(buffer)) => buffer.extend_from_slice(&data),
        }
    }
    Ok(BufferedBody::new(match gathered {
        Some(buffer) => buffer.freeze(),
        None => first.unwrap_or_default(),
    }))
}

/// What a failure to read the body means for the client.
fn read_error(err: &(dyn std::error::Error + 'static), limit: usize) -> Error {
    // A limit further out (tower-http's, wrapped by axum) counts the same as ours.
    if is_length_limit(err) {
        return Error::body_too_large(limit);
    }
    // A server that said what went wrong (the upload timed out, its memory budget for
    // bodies is spent) is believed.
    Error::find_in(err).unwrap_or_else(|| {
        Error::new(
            ErrorKind::InvalidRequest,
            format!("could not read the request body: {err}"),
        )
    })
}

fn is_length_limit(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        if e.is::<LengthLimitError>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// Refuses a request whose `content-length` says it is longer than `limit`, before a byte of
/// its body is read (a body that says nothing, or less, is held to the limit as it is read).
///
/// ```
/// use http::HeaderMap;
/// use llm_tower_core::check_declared_length;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("content-length", "2048".parse().unwrap());
/// assert!(check_declared_length(&headers, 4096).is_ok());
/// assert_eq!(check_declared_length(&headers, 1024).unwrap_err().status(), 413);
/// assert!(check_declared_length(&HeaderMap::new(), 0).is_ok());
/// ```
pub fn check_declared_length(headers: &http::HeaderMap, limit: usize) -> Result<(), Error> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(Error::body_too_large(limit));
    }
    Ok(())
}

/// Refuses a request whose body says it is longer than `limit`, before a byte of it is
/// read: by its size hint when it knows its length (hyper's body of a request with a
/// `content-length` does, from that header), else by its `content-length`
/// ([`check_declared_length`]). The hint costs no header lookup.
///
/// ```
/// use llm_tower_core::check_declared_size;
///
/// let request = http::Request::new(String::from("0123456789"));
/// assert!(check_declared_size(&request, 10).is_ok());
/// assert_eq!(check_declared_size(&request, 9).unwrap_err().status(), 413);
/// // A body that does not know its length (a mapped one): its header says it.
/// use http_body_util::{BodyExt, Full};
/// let unknown = Full::new(bytes::Bytes::new()).map_frame(|frame| frame);
/// let request = http::Request::builder().header("content-length", "2048").body(unknown).unwrap();
/// assert_eq!(check_declared_size(&request, 1024).unwrap_err().status(), 413);
/// ```
pub fn check_declared_size<B: Body>(request: &Request<B>, limit: usize) -> Result<(), Error> {
    match request.body().size_hint().exact() {
        Some(len) if len > limit as u64 => Err(Error::body_too_large(limit)),
        Some(_) => Ok(()),
        None => check_declared_length(request.headers(), limit),
    }
}

/// Buffers a request's body (see [`buffer_body`]), rejecting a body that says it is longer
/// than the limit ([`check_declared_size`]) before reading anything.
pub async fn buffer_request<B>(
    request: Request<B>,
    limit: usize,
) -> Result<Request<BufferedBody>, Error>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    check_declared_size(&request, limit)?;
    let (parts, body) = request.into_parts();
    let body = buffer_body(body, limit).await?;
    Ok(Request::from_parts(parts, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    async fn read(body: BufferedBody) -> Bytes {
        body.collect().await.unwrap().to_bytes()
    }

    /// A body of several frames with no size hint, like a chunked upload.
    struct Chunks(std::collections::VecDeque<Bytes>);
    impl Body for Chunks {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.get_mut().0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }
    fn chunked(parts: &[&'static [u8]]) -> Chunks {
        Chunks(parts.iter().map(|p| Bytes::from_static(p)).collect())
    }

    #[tokio::test]
    async fn at_cap_accepted_one_over_rejected() {
        let ok = buffer_body(chunked(&[b"12345", b"67890"]), 10)
            .await
            .unwrap();
        assert_eq!(read(ok).await, "1234567890");
        let err = buffer_body(chunked(&[b"12345", b"678901"]), 10)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BodyTooLarge);
        assert_eq!(err.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
        // A known size over the cap fails before reading.
        let err = buffer_body(Full::new(Bytes::from_static(b"12345678901")), 10)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BodyTooLarge);
    }

    #[tokio::test]
    async fn declared_length_over_cap_rejected_up_front() {
        let req = Request::builder()
            .header("content-length", "11")
            .body(chunked(&[]))
            .unwrap();
        assert_eq!(
            buffer_request(req, 10).await.unwrap_err().kind(),
            ErrorKind::BodyTooLarge
        );
    }

    #[tokio::test]
    async fn replay_is_identical() {
        let body = buffer_body(chunked(&[b"{\"a\":", b"1}"]), 100)
            .await
            .unwrap();
        assert_eq!(body.size_hint().exact(), Some(7));
        let clones: Vec<_> = (0..3).map(|_| body.clone()).collect();
        for clone in clones {
            assert_eq!(read(clone).await, "{\"a\":1}");
        }
        assert_eq!(read(body).await, "{\"a\":1}");
        let empty = BufferedBody::default();
        assert!(empty.is_end_stream());
        assert_eq!(read(empty).await, "");
    }
}
