//! The standard ping (`/ipfs/ping/1.0.0`: 32 bytes echoed back): every peer's pings are
//! answered on every connection, whatever becomes of ours, and each peer is pinged every
//! 15 s for its round-trip time. libp2p-ping 0.48 stops answering a peer once that peer
//! refuses our own ping (its handler goes inactive), and a js-libp2p peer's connection
//! monitor then drops the connection every 10 s.

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{AsyncReadExt, AsyncWriteExt, FutureExt, StreamExt};
use libp2p::core::transport::PortUse;
use libp2p::core::upgrade::ReadyUpgrade;
use libp2p::core::Endpoint;
use libp2p::swarm::handler::{
    ConnectionEvent, DialUpgradeError, FullyNegotiatedInbound, FullyNegotiatedOutbound,
};
use libp2p::swarm::{
    ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
    NetworkBehaviour, Stream, StreamUpgradeError, SubstreamProtocol, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/ping/1.0.0");
const PING_BYTES: usize = 32;
/// Between two of our pings on a connection.
const INTERVAL: Duration = Duration::from_secs(15);
/// An answer must come within this.
const TIMEOUT: Duration = Duration::from_secs(20);
/// Ping streams of one peer served at once on a connection: a peer pings on one (a new
/// one each time, as js-libp2p does, or one kept open, as rust-libp2p does); a stream
/// beyond these is closed at once.
const MAX_INBOUND: usize = 2;
/// A peer's ping stream with no ping for this long is closed.
const INBOUND_IDLE: Duration = Duration::from_secs(60);

/// A peer answered our ping: its round-trip time.
#[derive(Debug)]
pub struct Event {
    pub peer: PeerId,
    pub rtt: Duration,
}

#[derive(Default)]
pub struct Behaviour {
    events: VecDeque<Event>,
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = Handler;
    type ToSwarm = Event;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(Handler::default())
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(Handler::default())
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        _: ConnectionId,
        rtt: THandlerOutEvent<Self>,
    ) {
        // Bounded: at most one event per connection per interval waits here.
        self.events.push_back(Event { peer, rtt });
    }

    fn on_swarm_event(&mut self, _: FromSwarm) {}

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Event, THandlerInEvent<Self>>> {
        match self.events.pop_front() {
            Some(event) => Poll::Ready(ToSwarm::GenerateEvent(event)),
            None => Poll::Pending,
        }
    }
}

type Pong = BoxFuture<'static, ()>;
type Ping = BoxFuture<'static, io::Result<(Stream, Duration)>>;

/// Where our own pinging of a connection stands.
enum Outbound {
    /// Waiting for the next ping, with the stream of the last one if it is still open.
    Waiting(Option<Stream>),
    /// A stream was asked for.
    Opening,
    Pinging(Ping),
    /// The peer does not speak ping: we stop asking (and go on answering).
    Unsupported,
}

pub struct Handler {
    inbound: FuturesUnordered<Pong>,
    outbound: Outbound,
    next_ping: Pin<Box<tokio::time::Sleep>>,
}

impl Default for Handler {
    fn default() -> Handler {
        Handler {
            inbound: FuturesUnordered::new(),
            outbound: Outbound::Waiting(None),
            next_ping: Box::pin(tokio::time::sleep(Duration::ZERO)),
        }
    }
}

impl Handler {
    fn ping_later(&mut self, stream: Option<Stream>) {
        self.outbound = Outbound::Waiting(stream);
        self.next_ping
            .as_mut()
            .reset(tokio::time::Instant::now() + INTERVAL);
    }
}

impl ConnectionHandler for Handler {
    type FromBehaviour = Infallible;
    type ToBehaviour = Duration;
    type InboundProtocol = ReadyUpgrade<StreamProtocol>;
    type OutboundProtocol = ReadyUpgrade<StreamProtocol>;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol> {
        SubstreamProtocol::new(ReadyUpgrade::new(PROTOCOL), ())
    }

    fn on_behaviour_event(&mut self, event: Infallible) {
        match event {}
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, (), Duration>> {
        // Answering comes first, and never depends on how our own pings fare.
        while let Poll::Ready(Some(())) = self.inbound.poll_next_unpin(cx) {}
        loop {
            match std::mem::replace(&mut self.outbound, Outbound::Opening) {
                Outbound::Unsupported => {
                    self.outbound = Outbound::Unsupported;
                    return Poll::Pending;
                }
                Outbound::Opening => return Poll::Pending,
                Outbound::Waiting(stream) => {
                    if self.next_ping.as_mut().poll(cx).is_pending() {
                        self.outbound = Outbound::Waiting(stream);
                        return Poll::Pending;
                    }
                    match stream {
                        Some(stream) => self.outbound = Outbound::Pinging(ping(stream).boxed()),
                        None => {
                            // Stays `Opening` until the stream comes (or fails to).
                            return Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                                protocol: SubstreamProtocol::new(ReadyUpgrade::new(PROTOCOL), ()),
                            });
                        }
                    }
                }
                Outbound::Pinging(mut pinging) => match pinging.poll_unpin(cx) {
                    Poll::Pending => {
                        self.outbound = Outbound::Pinging(pinging);
                        return Poll::Pending;
                    }
                    Poll::Ready(Ok((stream, rtt))) => {
                        self.ping_later(Some(stream));
                        return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(rtt));
                    }
                    Poll::Ready(Err(error)) => {
                        tracing::debug!(%error, "ping failed");
                        self.ping_later(None);
                    }
                },
            }
        }
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<Self::InboundProtocol, Self::OutboundProtocol>,
    ) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                protocol: mut stream,
                ..
            }) => {
                // Pings never keep a connection open on their own.
                stream.ignore_for_keep_alive();
                if self.inbound.len() < MAX_INBOUND {
                    self.inbound.push(pong(stream).boxed());
                }
            }
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol: mut stream,
                ..
            }) => {
                stream.ignore_for_keep_alive();
                self.outbound = Outbound::Pinging(ping(stream).boxed());
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError { error, .. }) => match error {
                StreamUpgradeError::NegotiationFailed => self.outbound = Outbound::Unsupported,
                error => {
                    tracing::debug!(%error, "cannot open a ping stream");
                    self.ping_later(None);
                }
            },
            _ => {}
        }
    }
}

/// Answers a peer's pings on `stream` until it closes it or falls silent.
async fn pong(mut stream: Stream) {
    let mut payload = [0u8; PING_BYTES];
    loop {
        match tokio::time::timeout(INBOUND_IDLE, stream.read_exact(&mut payload)).await {
            Ok(Ok(())) => {}
            _ => break,
        }
        if stream.write_all(&payload).await.is_err() || stream.flush().await.is_err() {
            return;
        }
    }
    let _ = stream.close().await;
}

/// One ping on `stream`: the stream back (for the next) and the round-trip time.
async fn ping(mut stream: Stream) -> io::Result<(Stream, Duration)> {
    let mut payload = [0u8; PING_BYTES];
    getrandom::fill(&mut payload).map_err(|e| io::Error::other(e.to_string()))?;
    let exchange = async {
        let started = Instant::now();
        stream.write_all(&payload).await?;
        stream.flush().await?;
        let mut echo = [0u8; PING_BYTES];
        stream.read_exact(&mut echo).await?;
        if echo != payload {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the ping came back changed",
            ));
        }
        Ok(started.elapsed())
    };
    match tokio::time::timeout(TIMEOUT, exchange).await {
        Ok(Ok(rtt)) => Ok((stream, rtt)),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "no answer in time")),
    }
}
