//! Reading a response body under a size cap, one chunk at a time.

use std::future::Future;

use bytes::Bytes;

/// Something that yields a body in chunks: `reqwest::Response`, or a
/// counting stream in tests.
pub(crate) trait ChunkSource: Send {
    /// The next chunk; `Ok(None)` at the end.
    fn next_chunk(&mut self) -> impl Future<Output = Result<Option<Bytes>, reqwest::Error>> + Send;
    /// The announced length, when the response has one.
    fn announced_len(&self) -> Option<u64>;
}

impl ChunkSource for reqwest::Response {
    fn next_chunk(&mut self) -> impl Future<Output = Result<Option<Bytes>, reqwest::Error>> + Send {
        self.chunk()
    }

    fn announced_len(&self) -> Option<u64> {
        self.content_length()
    }
}

/// A body read under a cap.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Capped {
    /// The whole body, at most `cap` bytes.
    Complete(Vec<u8>),
    /// The body is larger than the cap; reading stopped (after at most
    /// `cap` bytes plus one chunk, or at once when the announced length
    /// already exceeds it). Nothing read is kept.
    TooLarge,
}

/// Reads `source` until its end or until more than `cap` bytes arrived.
/// Holds at most `cap` bytes plus the chunk in hand at any time.
///
/// # Errors
/// The transport error of a chunk that could not be read.
pub(crate) async fn read_capped<S: ChunkSource>(
    source: &mut S,
    cap: usize,
) -> Result<Capped, reqwest::Error> {
    if source.announced_len().is_some_and(|len| len > cap as u64) {
        return Ok(Capped::TooLarge);
    }
    let initial = source
        .announced_len()
        .map_or(8 * 1024, |len| len as usize)
        .min(cap);
    let mut body = Vec::with_capacity(initial);
    while let Some(chunk) = source.next_chunk().await? {
        if body.len() + chunk.len() > cap {
            return Ok(Capped::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Capped::Complete(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 20 MB body in 16 KiB chunks that counts what the reader pulled.
    struct Counting {
        total: usize,
        chunk: usize,
        pulled: usize,
        announce: bool,
    }

    impl ChunkSource for Counting {
        async fn next_chunk(&mut self) -> Result<Option<Bytes>, reqwest::Error> {
            if self.pulled >= self.total {
                return Ok(None);
            }
            let n = self.chunk.min(self.total - self.pulled);
            self.pulled += n;
            Ok(Some(Bytes::from(vec![b'x'; n])))
        }

        fn announced_len(&self) -> Option<u64> {
            self.announce.then_some(self.total as u64)
        }
    }

    const CAP: usize = 1 << 20;
    const CHUNK: usize = 16 * 1024;

    #[tokio::test]
    async fn a_20_mb_body_is_cut_off_after_at_most_the_cap_plus_one_chunk() {
        let mut source = Counting {
            total: 20_000_000,
            chunk: CHUNK,
            pulled: 0,
            announce: false,
        };
        assert_eq!(
            read_capped(&mut source, CAP).await.unwrap(),
            Capped::TooLarge
        );
        assert!(
            source.pulled <= CAP + CHUNK,
            "pulled {} bytes of a 20 MB body",
            source.pulled
        );
    }

    #[tokio::test]
    async fn an_announced_oversized_body_is_refused_before_reading() {
        let mut source = Counting {
            total: 20_000_000,
            chunk: CHUNK,
            pulled: 0,
            announce: true,
        };
        assert_eq!(
            read_capped(&mut source, CAP).await.unwrap(),
            Capped::TooLarge
        );
        assert_eq!(source.pulled, 0);
    }

    #[tokio::test]
    async fn a_body_at_the_cap_is_read_whole() {
        let mut source = Counting {
            total: CAP,
            chunk: CHUNK,
            pulled: 0,
            announce: false,
        };
        match read_capped(&mut source, CAP).await.unwrap() {
            Capped::Complete(body) => assert_eq!(body.len(), CAP),
            Capped::TooLarge => panic!("a body of exactly the cap was refused"),
        }
    }
}
