//! Canonical borsh decoding of bytes from strangers: the input size is capped before
//! anything is read, length prefixes are checked before allocating, and leftover bytes
//! are refused, so every object has exactly one encoding.

use borsh::BorshDeserialize;
use std::io::{self, Read};

/// Bytes that are not the one encoding of what they must be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Over the size limit, before any decoding.
    #[error("{what} is {size} bytes, more than the limit of {max}")]
    TooLarge {
        /// What was decoded ("block", "transaction", …).
        what: &'static str,
        /// Its bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Not its encoding.
    #[error("{what} could not be decoded: {reason}")]
    Malformed {
        /// What was decoded.
        what: &'static str,
        /// Why not.
        reason: String,
    },
    /// Its encoding and more: the encoding is canonical, so the bytes are refused.
    #[error("{what} has {extra} bytes left over after decoding")]
    TrailingBytes {
        /// What was decoded.
        what: &'static str,
        /// The bytes after it.
        extra: usize,
    },
}

/// Decodes exactly one `T` from `bytes`, which may be at most `max` bytes long.
pub fn decode_exact<T: BorshDeserialize>(
    what: &'static str,
    bytes: &[u8],
    max: usize,
) -> Result<T, DecodeError> {
    if bytes.len() > max {
        return Err(DecodeError::TooLarge {
            what,
            size: bytes.len(),
            max,
        });
    }
    let mut rest = bytes;
    let value = T::deserialize(&mut rest).map_err(|e| DecodeError::Malformed {
        what,
        reason: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes {
            what,
            extra: rest.len(),
        });
    }
    Ok(value)
}

pub(crate) fn invalid_data(error: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error.to_string())
}

/// Reads a borsh string of at most `buf.len()` bytes into `buf` (no allocation); the
/// length prefix is checked before anything else is read.
pub(crate) fn read_bounded_str<'a, R: Read>(
    reader: &mut R,
    buf: &'a mut [u8],
) -> io::Result<&'a str> {
    let len = u32::deserialize_reader(reader)? as usize;
    if len > buf.len() {
        return Err(invalid_data(format!(
            "string of {len} bytes, at most {} allowed",
            buf.len()
        )));
    }
    reader.read_exact(&mut buf[..len])?;
    std::str::from_utf8(&buf[..len]).map_err(invalid_data)
}

/// Reads a borsh vector whose length prefix must not exceed `max` elements.
pub(crate) fn read_bounded_vec<R: Read, T: BorshDeserialize>(
    reader: &mut R,
    max: usize,
) -> io::Result<Vec<T>> {
    let len = u32::deserialize_reader(reader)? as usize;
    if len > max {
        return Err(invalid_data(format!(
            "list of {len} items, at most {max} allowed"
        )));
    }
    // Capacity grows with what is actually read, never with what the prefix claims.
    let mut items = Vec::with_capacity(len.min(1024));
    for _ in 0..len {
        items.push(T::deserialize_reader(reader)?);
    }
    Ok(items)
}
