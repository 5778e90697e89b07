//! A sync request off the wire, through the real codec (4-byte length, then borsh): any
//! request read re-encodes to exactly the bytes that carried it; anything else is
//! `Malformed` (the sender is penalised) or an I/O error (the stream is dropped).
#![no_main]

use apiary_node::protocol::{sync_protocol, Inbound, SyncCodec, MAX_REQUEST_BYTES};
use futures::executor::block_on;
use futures::io::Cursor;
use libfuzzer_sys::fuzz_target;
use libp2p::request_response::Codec;

fuzz_target!(|data: &[u8]| {
    let mut codec = SyncCodec::new(1 << 20);
    let protocol = sync_protocol(&apiary_fuzz::genesis().hash());
    let mut io = Cursor::new(data);
    if let Ok(Inbound::Request(request)) = block_on(codec.read_request(&protocol, &mut io)) {
        let body = borsh::to_vec(&request).unwrap();
        assert!(body.len() <= MAX_REQUEST_BYTES);
        assert_eq!(&data[..4], &(body.len() as u32).to_be_bytes());
        assert_eq!(
            &data[4..4 + body.len()],
            &body[..],
            "one encoding per request"
        );
    }
});
