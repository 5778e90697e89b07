//! The request-response protocols: sync (status, headers, blocks) and mempool (what each
//! side's mempool holds, and the transactions the other lacks). Borsh messages, each
//! length-prefixed and refused before reading when longer than its limit.

use apiary_core::{BlockHash, BlockHeader, Height, SignedTransaction, TxId, Work};
use borsh::{BorshDeserialize, BorshSerialize};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use std::io;
use std::marker::PhantomData;

/// Longest request: a locator of a few dozen hashes.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Most headers a response carries.
pub const MAX_HEADERS_PER_RESPONSE: u32 = 2_000;
/// Most blocks one request may ask for.
pub const MAX_BODIES_PER_REQUEST: usize = 128;
/// A response holds blocks up to about this many bytes (always at least one block).
pub const RESPONSE_BYTES_TARGET: usize = 8 << 20;

/// Where a node's main chain stands.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Status {
    pub genesis: BlockHash,
    pub height: Height,
    pub tip: BlockHash,
    pub total_work: Work,
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum SyncRequest {
    /// Here is my status; send yours.
    Status(Status),
    /// Headers of your main chain after the first of these hashes you hold (tip first,
    /// then exponentially further back, ending at genesis), lowest first.
    GetHeaders { locator: Vec<BlockHash>, max: u32 },
    /// These blocks, in this order, as far as you hold them.
    GetBodies { hashes: Vec<BlockHash> },
}

/// A request as read off the wire. libp2p does not tell the behaviour about requests that
/// fail to decode, so the codec hands them up as `Malformed` for the sender to be penalised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inbound<R = SyncRequest> {
    Request(R),
    Malformed(String),
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum SyncResponse {
    Status(Status),
    Headers(Vec<BlockHeader>),
    /// Borsh bytes of the blocks asked for, in order; shorter if some are missing.
    Blocks(Vec<Vec<u8>>),
}

/// The protocol name carries the genesis hash: nodes of other chains cannot even speak it.
pub fn sync_protocol(genesis: &BlockHash) -> StreamProtocol {
    StreamProtocol::try_from_owned(format!("/apiary/{genesis}/sync/2"))
        .expect("a name starting with / is a valid protocol")
}

/// Most txids one mempool inventory carries (the highest fees first).
pub const MAX_INVENTORY: u32 = 50_000;
/// Most transactions one `GetTxs` may ask for.
pub const MAX_TXS_PER_REQUEST: usize = 1_000;
/// Longest mempool answer: a full inventory, or a thousand of the largest transactions.
pub const MAX_MEMPOOL_RESPONSE_BYTES: usize = 2 << 20;

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum MempoolRequest {
    /// The txids your mempool holds, highest fee first, at most `max` (and at most
    /// `MAX_INVENTORY`).
    Inventory { max: u32 },
    /// These transactions, as far as your mempool holds them, in this order (at most
    /// `MAX_TXS_PER_REQUEST`).
    GetTxs { txids: Vec<TxId> },
}

#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum MempoolResponse {
    Inventory(Vec<TxId>),
    Txs(Vec<SignedTransaction>),
}

/// The mempool protocol's name; like sync's, it carries the genesis hash.
pub fn mempool_protocol(genesis: &BlockHash) -> StreamProtocol {
    StreamProtocol::try_from_owned(format!("/apiary/{genesis}/mempool/1"))
        .expect("a name starting with / is a valid protocol")
}

/// A request-response codec of borsh messages: `Req` requests (a malformed one handed up
/// as `Inbound::Malformed`), `Resp` answers of at most `max_response_bytes`.
pub struct FramedCodec<Req, Resp> {
    pub max_response_bytes: usize,
    types: PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> FramedCodec<Req, Resp> {
    pub fn new(max_response_bytes: usize) -> FramedCodec<Req, Resp> {
        FramedCodec {
            max_response_bytes,
            types: PhantomData,
        }
    }
}

impl<Req, Resp> Clone for FramedCodec<Req, Resp> {
    fn clone(&self) -> Self {
        FramedCodec::new(self.max_response_bytes)
    }
}

pub type SyncCodec = FramedCodec<SyncRequest, SyncResponse>;
pub type MempoolCodec = FramedCodec<MempoolRequest, MempoolResponse>;

async fn read_limited<T: BorshDeserialize, R: AsyncRead + Unpin + Send>(
    io: &mut R,
    max: usize,
) -> io::Result<T> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message of {len} bytes exceeds {max}"),
        ));
    }
    let mut bytes = vec![0u8; len];
    io.read_exact(&mut bytes).await?;
    apiary_core::decode_exact("sync message", &bytes, max)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

async fn write_framed<T: BorshSerialize, W: AsyncWrite + Unpin + Send>(
    io: &mut W,
    value: &T,
) -> io::Result<()> {
    let bytes = borsh::to_vec(value)?;
    io.write_all(&(bytes.len() as u32).to_be_bytes()).await?;
    io.write_all(&bytes).await?;
    io.close().await
}

impl<Req, Resp> libp2p::request_response::Codec for FramedCodec<Req, Resp>
where
    Req: BorshSerialize + BorshDeserialize + Send + Sync + 'static,
    Resp: BorshSerialize + BorshDeserialize + Send + Sync + 'static,
{
    type Protocol = StreamProtocol;
    type Request = Inbound<Req>;
    type Response = Resp;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Inbound<Req>> {
        Ok(match read_limited(io, MAX_REQUEST_BYTES).await {
            Ok(request) => Inbound::Request(request),
            Err(error) if error.kind() == io::ErrorKind::InvalidData => {
                Inbound::Malformed(error.to_string())
            }
            Err(error) => return Err(error),
        })
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Resp> {
        read_limited(io, self.max_response_bytes).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Inbound<Req>,
    ) -> io::Result<()> {
        match request {
            Inbound::Request(request) => write_framed(io, &request).await,
            Inbound::Malformed(_) => Err(io::Error::other("malformed requests are never sent")),
        }
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Resp,
    ) -> io::Result<()> {
        write_framed(io, &response).await
    }
}
