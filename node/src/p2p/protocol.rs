//! The sync protocol: borsh messages over libp2p request-response, each length-prefixed
//! and refused before reading when longer than its limit.

use apiary_core::{BlockHash, BlockHeader, Height, Work};
use borsh::{BorshDeserialize, BorshSerialize};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use std::io;

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
pub enum Inbound {
    Request(SyncRequest),
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

#[derive(Clone)]
pub struct SyncCodec {
    pub max_response_bytes: usize,
}

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

impl libp2p::request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = Inbound;
    type Response = SyncResponse;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Inbound> {
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
    ) -> io::Result<SyncResponse> {
        read_limited(io, self.max_response_bytes).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Inbound,
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
        response: SyncResponse,
    ) -> io::Result<()> {
        write_framed(io, &response).await
    }
}
