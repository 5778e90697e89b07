//! A sync response off the wire, through the real codec: any response read (a status, a
//! list of headers, a list of blocks' bytes) re-encodes to exactly the bytes that carried
//! it, within the codec's limit.
#![no_main]

use apiary_node::protocol::{sync_protocol, SyncCodec};
use futures::executor::block_on;
use futures::io::Cursor;
use libfuzzer_sys::fuzz_target;
use libp2p::request_response::Codec;

const MAX: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let mut codec = SyncCodec::new(MAX);
    let protocol = sync_protocol(&apiary_fuzz::genesis().hash());
    let mut io = Cursor::new(data);
    if let Ok(response) = block_on(codec.read_response(&protocol, &mut io)) {
        let body = borsh::to_vec(&response).unwrap();
        assert!(body.len() <= MAX);
        assert_eq!(&data[..4], &(body.len() as u32).to_be_bytes());
        assert_eq!(
            &data[4..4 + body.len()],
            &body[..],
            "one encoding per response"
        );
    }
});
