//! The one line codec: every line protocol read here (a container's output
//! for its ready line, the lifeline, the feed both ways) goes through it.

use bytes::BytesMut;
use tokio::io::AsyncRead;
use tokio_util::codec::{Decoder, FramedRead, LinesCodec, LinesCodecError};

/// Why no line could be read.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error("a line is longer than {0} bytes")]
    TooLong(usize),
    #[error("a line was cut short")]
    CutShort,
    /// A failed read, or a line that is not UTF-8.
    #[error("reading failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Longest output line a container's reader keeps (see `output`), and the
/// longest a ready-line reader reads: longer ones cannot be one.
pub const MAX_LINE: usize = 64 * 1024;

/// Newline-terminated UTF-8 lines of at most `max` bytes (`\r\n` too), as
/// `LinesCodec` reads them, except at the end: bytes without a newline there
/// are an error (the line was cut short), not a last line. A line past `max`
/// is an error; decoding on skips to its end.
#[derive(Debug)]
pub struct LineCodec {
    codec: LinesCodec,
    max: usize,
}

impl LineCodec {
    /// Lines of at most `max` bytes.
    pub fn new(max: usize) -> LineCodec {
        LineCodec {
            codec: LinesCodec::new_with_max_length(max),
            max,
        }
    }
}

impl Decoder for LineCodec {
    type Item = String;
    type Error = LineError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<String>, LineError> {
        self.codec.decode(buf).map_err(|e| match e {
            LinesCodecError::MaxLineLengthExceeded => LineError::TooLong(self.max),
            LinesCodecError::Io(e) => LineError::Io(e),
        })
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<String>, LineError> {
        match self.decode(buf)? {
            None if !buf.is_empty() => Err(LineError::CutShort),
            line => Ok(line),
        }
    }
}

/// The lines of `read`, each at most `max` bytes. The stream yields one
/// error and then ends (a line too long, not UTF-8, or cut short).
pub fn reader<R: AsyncRead>(read: R, max: usize) -> FramedRead<R, LineCodec> {
    FramedRead::new(read, LineCodec::new(max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    async fn read_all(input: &[u8], max: usize) -> Vec<Result<String, String>> {
        reader(input, max)
            .map(|line| line.map_err(|e| e.to_string()))
            .collect()
            .await
    }

    #[tokio::test]
    async fn lines_are_read_up_to_the_bound_and_a_cut_one_is_an_error() {
        let read = read_all(b"one\r\ntwo\n", 8).await;
        assert_eq!(read, [Ok("one".to_owned()), Ok("two".to_owned())]);
        let read = read_all(b"one\ntw", 8).await;
        assert_eq!(read.len(), 2);
        assert!(read[1].is_err(), "{read:?}");
        let read = read_all(b"12345678\n123456789\nnext\n", 8).await;
        assert_eq!(read[0], Ok("12345678".to_owned()));
        assert!(read[1].is_err(), "{read:?}");
        assert_eq!(read.len(), 2, "the reader ends at the error");
    }

    #[test]
    fn decoding_on_past_a_long_line_skips_to_its_end() {
        let mut codec = LineCodec::new(4);
        let mut buf = BytesMut::from(&b"toolong"[..]);
        assert!(codec.decode(&mut buf).is_err());
        buf.extend_from_slice(b"still\nok\n");
        assert_eq!(codec.decode(&mut buf).ok().flatten().as_deref(), Some("ok"));
    }
}
