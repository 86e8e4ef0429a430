//! DNS over dedicated QUIC connections (RFC 9250): what travels on a query's stream, and the error
//! codes of §4.3. The shell owns the QUIC connection; this is the part that reads untrusted bytes.
//!
//! A query's stream carries exactly one message each way, each with the 2-octet length prefix of
//! DNS over TCP (§4.2), and the DNS ID is 0 (§4.2.1). The engine's message transport already
//! writes ID 0 and pads queries to [`super::edns::QUERY_PAD_BLOCK`] (§5.4 via RFC 8467), so the shell
//! only adds the prefix and the FIN.

use super::{Error, framing, header, message};

/// The DoQ error codes (RFC 9250 §4.3), used in CONNECTION_CLOSE, RESET_STREAM and STOP_SENDING.
pub mod code {
    /// No error: the connection or stream closes normally (e.g. when idle).
    pub const NO_ERROR: u32 = 0x0;
    /// The implementation hit an internal error and cannot serve the transaction or connection.
    pub const INTERNAL_ERROR: u32 = 0x1;
    /// The peer broke this protocol (§4.3.3); the connection is closed with it.
    pub const PROTOCOL_ERROR: u32 = 0x2;
    /// A transaction was cancelled (§4.3.1).
    pub const REQUEST_CANCELLED: u32 = 0x3;
    /// The server is overloaded (§4.3.2).
    pub const EXCESSIVE_LOAD: u32 = 0x4;
    /// No more specific code applies.
    pub const UNSPECIFIED_ERROR: u32 = 0x5;
    /// Reserved, for testing that unknown codes are accepted (§4.3, §8.4).
    pub const ERROR_RESERVED: u32 = 0xd098_ea5e;
}

/// The edns-tcp-keepalive option (RFC 7828), which DoQ forbids (§5.5.2).
pub const OPTION_TCP_KEEPALIVE: u16 = 11;

/// The longest stream payload: the prefix and a 65,535-octet message.
pub const MAX_STREAM: usize = 2 + 65_535;

/// Why a response stream breaks RFC 9250 (a connection error DOQ_PROTOCOL_ERROR, §4.3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamError {
    /// The stream ended before the message the prefix announced was complete, or is empty.
    ShortStream,
    /// Bytes after the one response (a second message or garbage).
    ExtraData,
    /// The response's DNS ID is not 0 (§4.2.1).
    NonZeroId,
    /// The response carries edns-tcp-keepalive (§5.5.2).
    TcpKeepalive,
}

impl StreamError {
    /// What went wrong, in words.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ShortStream => "stream ended inside the message",
            Self::ExtraData => "data after the response",
            Self::NonZeroId => "non-zero DNS message ID",
            Self::TcpKeepalive => "edns-tcp-keepalive option",
        }
    }
}

/// The 2-octet length prefix a query is sent with (the query already has ID 0).
pub fn query_prefix(query: &[u8]) -> Result<[u8; 2], Error> {
    framing::prefix(query.len())
}

/// The DNS message of a complete response stream (everything up to the FIN).
///
/// The stream must hold exactly one prefixed message with ID 0 and no edns-tcp-keepalive option; a
/// message whose records do not parse is returned as it is, for the engine to judge like any other
/// upstream answer.
pub fn response(stream: &[u8]) -> Result<&[u8], StreamError> {
    let (msg, used) = match framing::split(stream) {
        Ok(Some(frame)) => frame,
        Ok(None) | Err(_) => return Err(StreamError::ShortStream),
    };
    if used != stream.len() {
        return Err(StreamError::ExtraData);
    }
    if let Ok(h) = header::Header::parse(msg)
        && h.id != 0
    {
        return Err(StreamError::NonZeroId);
    }
    if let Ok(scan) = message::scan(msg)
        && let Some(opt) = scan.opt
        && let Some(rdata) = msg.get(opt.rdata_start..opt.end)
        && super::edns::options(rdata).any(|(code, _)| code == OPTION_TCP_KEEPALIVE)
    {
        return Err(StreamError::TcpKeepalive);
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(id: u16, extra_opt: &[u8]) -> [u8; 64] {
        // Header (1 question, 0 answers, 1 additional), question `a.` A IN, OPT with `extra_opt`.
        let mut m = [0u8; 64];
        m[..2].copy_from_slice(&id.to_be_bytes());
        m[2] = 0x81;
        m[3] = 0x80;
        m[5] = 1;
        m[11] = 1;
        m[12..19].copy_from_slice(&[1, b'a', 0, 0, 1, 0, 1]);
        m[19..30].copy_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
        m[29] = extra_opt.len() as u8;
        m[30..30 + extra_opt.len()].copy_from_slice(extra_opt);
        m
    }

    fn stream(msg: &[u8]) -> alloc::vec::Vec<u8> {
        let mut s = alloc::vec::Vec::from(query_prefix(msg).unwrap());
        s.extend_from_slice(msg);
        s
    }

    #[test]
    fn one_prefixed_message_with_id_zero() {
        let m = answer(0, &[]);
        let msg = &m[..30];
        assert_eq!(response(&stream(msg)), Ok(msg));
        let padded = &answer(0, &[0, 12, 0, 2, 0, 0])[..36];
        assert_eq!(response(&stream(padded)), Ok(padded));
    }

    #[test]
    fn protocol_errors() {
        let m = answer(0, &[]);
        let msg = &m[..30];
        let s = stream(msg);
        assert_eq!(response(&s[..s.len() - 1]), Err(StreamError::ShortStream));
        assert_eq!(response(&s[..1]), Err(StreamError::ShortStream));
        assert_eq!(response(&[]), Err(StreamError::ShortStream));
        assert_eq!(response(&[0, 0]), Err(StreamError::ShortStream));
        let mut two = s.clone();
        two.extend_from_slice(&s);
        assert_eq!(response(&two), Err(StreamError::ExtraData));
        let m = answer(0x1234, &[]);
        assert_eq!(response(&stream(&m[..30])), Err(StreamError::NonZeroId));
        let m = answer(0, &[0, 11, 0, 2, 0, 100]);
        assert_eq!(response(&stream(&m[..36])), Err(StreamError::TcpKeepalive));
    }

    #[test]
    fn unparsable_messages_go_to_the_engine() {
        let s = stream(&[0, 0, 0x81]);
        assert_eq!(response(&s), Ok(&[0u8, 0, 0x81][..]));
    }
}
