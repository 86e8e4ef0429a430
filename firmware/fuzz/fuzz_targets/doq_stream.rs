//! `wire::doq::response` on an arbitrary DoQ response stream (everything up to the FIN): never
//! panics; accepts exactly one prefixed message with ID 0 that fills the stream, returned in place;
//! whatever it accepts, the engine's answer path (`message::scan`) may read without panicking.
#![no_main]

use lanveil_core::wire::doq::{StreamError, query_prefix, response};
use lanveil_core::wire::{header, message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|stream: &[u8]| {
    match response(stream) {
        Ok(msg) => {
            assert!(stream.len() >= 2);
            let len = usize::from(u16::from_be_bytes([stream[0], stream[1]]));
            assert_eq!(len, stream.len() - 2, "the message fills the stream");
            assert_eq!(msg, &stream[2..], "returned in place");
            assert!(!msg.is_empty());
            assert_eq!(query_prefix(msg).ok(), Some([stream[0], stream[1]]));
            if let Ok(h) = header::Header::parse(msg) {
                assert_eq!(h.id, 0);
            }
            let _ = message::scan(msg);
        }
        Err(StreamError::ShortStream) => {
            let declared = stream
                .get(..2)
                .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])));
            assert!(declared.is_none_or(|d| d == 0 || d > stream.len() - 2));
        }
        Err(StreamError::ExtraData) => {
            let d = usize::from(u16::from_be_bytes([stream[0], stream[1]]));
            assert!(d > 0 && d < stream.len() - 2);
        }
        Err(StreamError::NonZeroId) => {
            assert!(header::Header::parse(&stream[2..]).is_ok_and(|h| h.id != 0));
        }
        Err(StreamError::TcpKeepalive) => {
            assert!(message::scan(&stream[2..]).is_ok_and(|s| s.opt.is_some()));
        }
    }
});
