//! [`ResponseBody`] of [`ReadUsage`](crate::ReadUsage): the answer as it came, read for its
//! usage as it passes; the usage recorded when it ends, breaks off or is dropped.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use llm_tower_core::{AttemptSpan, UsageRecord};
use pin_project_lite::pin_project;

use crate::response_model::response_model;
use crate::scan::Scanner;

/// What reading one answer needs.
#[derive(Debug)]
pub(crate) struct Reading {
    pub(crate) scanner: Scanner,
    pub(crate) record: UsageRecord,
    /// The stream is OpenAI's, asked for its usage by this layer: the extra chunk is taken out.
    pub(crate) strip: bool,
    /// The request's length, for an estimate of its tokens when the answer says none.
    pub(crate) request_len: usize,
    /// The attempt's span, when a tracing backend listens: the usage is recorded on it,
    /// and the model the answer names, looked for until found.
    pub(crate) span: Option<AttemptSpan>,
    pub(crate) model_named: bool,
}

impl Reading {
    /// Records on the span the model `data` names, if it is the first to name one.
    fn look_for_model(&mut self, data: &[u8]) {
        if let Some(AttemptSpan(span)) = &self.span
            && !self.model_named
            && let Some(model) = response_model(data)
        {
            span.record("gen_ai.response.model", model);
            self.model_named = true;
        }
    }

    /// The answer ended (`complete`), broke off or was dropped: reads what was kept for its
    /// end and records its usage. Returns a stream's unfinished last line.
    fn end(mut self: Box<Self>, complete: bool) -> Vec<u8> {
        let rest = self.scanner.finish();
        if let Some(usage) = self.scanner.usage(self.request_len, complete) {
            if let Some(AttemptSpan(span)) = &self.span {
                // As `i64`: the exporter takes unsigned values for text.
                let tokens = |count: u64| i64::try_from(count).unwrap_or(i64::MAX);
                span.record("gen_ai.usage.input_tokens", tokens(usage.input));
                span.record("gen_ai.usage.output_tokens", tokens(usage.output));
            }
            self.record.add(usage);
        }
        rest
    }
}

pin_project! {
    /// The response body of [`ReadUsage`](crate::ReadUsage): the upstream's, read for its
    /// usage as it passes (an OpenAI stream this layer asked for usage loses the extra chunk
    /// again; every other byte is the upstream's).
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Full};
    /// use llm_tower_usage::ResponseBody;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let body = ResponseBody::passthrough(Full::new(Bytes::from_static(b"as it came")));
    /// assert_eq!(body.collect().await.unwrap().to_bytes(), "as it came");
    /// # }
    /// ```
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        reading: Option<Box<Reading>>,
    }

    impl<B> PinnedDrop for ResponseBody<B> {
        fn drop(this: Pin<&mut Self>) {
            // Dropped before its end (the client went away): what was read, estimated.
            if let Some(reading) = this.project().reading.take() {
                reading.end(false);
            }
        }
    }
}

impl<B> ResponseBody<B> {
    /// The upstream body, not read.
    pub fn passthrough(inner: B) -> Self {
        Self {
            inner,
            reading: None,
        }
    }

    pub(crate) fn reading(inner: B, reading: Reading) -> Self {
        Self {
            inner,
            reading: Some(Box::new(reading)),
        }
    }
}

impl<B: std::fmt::Debug> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        loop {
            let frame = ready!(this.inner.as_mut().poll_frame(cx));
            let as_bytes = |frame: Frame<B::Data>| {
                frame.map_data(|mut data| data.copy_to_bytes(data.remaining()))
            };
            let Some(reading) = this.reading.as_mut() else {
                return Poll::Ready(frame.map(|f| f.map(as_bytes)));
            };
            let data = match frame {
                Some(Ok(frame)) => match as_bytes(frame).into_data() {
                    Ok(data) => data,
                    Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                },
                Some(Err(err)) => {
                    // Broken off: what was read, estimated.
                    if let Some(reading) = this.reading.take() {
                        reading.end(false);
                    }
                    return Poll::Ready(Some(Err(err)));
                }
                None => {
                    let strip = reading.strip;
                    let rest = this.reading.take().map(|r| r.end(true)).unwrap_or_default();
                    // A rewritten stream's last line, if it had no end of line.
                    return Poll::Ready(
                        (strip && !rest.is_empty()).then(|| Ok(Frame::data(Bytes::from(rest)))),
                    );
                }
            };
            // The last frame: the usage is recorded before it goes, for whoever stops reading
            // at the end the body says it has (a layer further out records its own end then).
            let last = this.inner.is_end_stream();
            reading.look_for_model(&data);
            if !reading.strip {
                reading.scanner.push(&data, last);
                if last && let Some(reading) = this.reading.take() {
                    reading.end(true);
                }
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            // Lines only lose bytes: the frame's size is room enough but for a line the last
            // frame cut, completed here.
            let mut out = BytesMut::with_capacity(data.len());
            reading.scanner.push_stripped(&data, &mut out);
            if last && let Some(reading) = this.reading.take() {
                out.extend_from_slice(&reading.end(true));
            }
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // Not while something read is still to be recorded: the end is read first.
        self.inner.is_end_stream() && self.reading.as_ref().is_none_or(|r| !r.scanner.seen())
    }

    fn size_hint(&self) -> SizeHint {
        match &self.reading {
            Some(reading) if reading.strip => SizeHint::new(),
            _ => self.inner.size_hint(),
        }
    }
}
