//! [`Ahead`]: the frames of a response body read before its head was passed on, in order.

use std::collections::VecDeque;

use http_body::Frame;

/// Frames read ahead, in order. A success reads one frame ahead, on every request: its data
/// is kept inline, and only an error body read further (or trailers) allocates a queue. No
/// bigger than the queue alone, but for its tag: the response that holds it is moved whole
/// through every layer above.
#[derive(Debug, Default)]
pub(crate) enum Ahead<D> {
    #[default]
    None,
    One(D),
    Many(VecDeque<Frame<D>>),
}

impl<D> Ahead<D> {
    /// Adds the next frame, after those already in.
    pub(crate) fn push(&mut self, frame: Frame<D>) {
        match std::mem::take(self) {
            Self::None => {
                *self = match frame.into_data() {
                    Ok(data) => Self::One(data),
                    Err(frame) => Self::Many(VecDeque::from([frame])),
                };
            }
            Self::One(data) => *self = Self::Many(VecDeque::from([Frame::data(data), frame])),
            Self::Many(mut frames) => {
                frames.push_back(frame);
                *self = Self::Many(frames);
            }
        }
    }

    /// Takes the earliest frame.
    pub(crate) fn pop(&mut self) -> Option<Frame<D>> {
        match self {
            Self::None => None,
            Self::One(_) => match std::mem::take(self) {
                Self::One(data) => Some(Frame::data(data)),
                _ => unreachable!("matched above"),
            },
            Self::Many(frames) => frames.pop_front(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Self::None => 0,
            Self::One(_) => 1,
            Self::Many(frames) => frames.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The data of the frames, earliest first (trailers are not data).
    pub(crate) fn data(&self) -> impl Iterator<Item = &D> {
        let (one, many) = match self {
            Self::None => (None, None),
            Self::One(data) => (Some(data), None),
            Self::Many(frames) => (None, Some(frames.iter().filter_map(Frame::data_ref))),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_out_in_the_order_they_went_in() {
        let mut ahead = Ahead::default();
        assert!(ahead.is_empty());
        for n in 0..3 {
            ahead.push(Frame::data(n));
        }
        assert_eq!(ahead.len(), 3);
        let seen: Vec<_> = ahead.data().copied().collect();
        assert_eq!(seen, [0, 1, 2]);
        assert_eq!(ahead.pop().and_then(|f| f.into_data().ok()), Some(0));
        // Pushed after a pop: still after those that were in.
        ahead.push(Frame::data(3));
        let out: Vec<_> = std::iter::from_fn(|| ahead.pop())
            .filter_map(|f| f.into_data().ok())
            .collect();
        assert_eq!(out, [1, 2, 3]);
        assert!(ahead.is_empty());
        // Trailers keep their place, and are not data.
        ahead.push(Frame::trailers(http::HeaderMap::new()));
        ahead.push(Frame::data(4));
        assert_eq!(ahead.data().copied().collect::<Vec<_>>(), [4]);
        assert!(ahead.pop().is_some_and(|f| f.is_trailers()));
        assert_eq!(ahead.pop().and_then(|f| f.into_data().ok()), Some(4));
        assert!(ahead.pop().is_none());
    }
}
