//! The sockets of a listener: a TCP one, or a Unix domain socket
//! (`listener 0 PATH`). To the loop both carry a stream of bytes alike;
//! they differ in how the peer is named and in TCP's options.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;

use mio::event::Source;
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Interest, Registry, Token};

/// A client's (or a bridge's) socket.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// A listening socket.
pub enum Listening {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// The same call on either kind of socket.
macro_rules! either {
    ($self:expr, $s:ident => $call:expr) => {
        match $self {
            Self::Tcp($s) => $call,
            Self::Unix($s) => $call,
        }
    };
}

impl Stream {
    /// Who the client is, for the log: its address, or for a Unix socket
    /// (whose clients are unnamed) the socket's path with port 0, as
    /// mosquitto names them. An accepted Unix socket's own address is its
    /// listener's path.
    pub fn peer(&self) -> Option<String> {
        match self {
            Stream::Tcp(s) => s.peer_addr().ok().map(|a| a.to_string()),
            Stream::Unix(s) => {
                let addr = s.local_addr().ok()?;
                Some(format!("{}:0", addr.as_pathname()?.display()))
            }
        }
    }

    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        either!(self, s => s.shutdown(how))
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        either!(self, s => s.read(buf))
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        either!(self, s => s.write(buf))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        either!(self, s => s.write_vectored(bufs))
    }

    fn flush(&mut self) -> io::Result<()> {
        either!(self, s => s.flush())
    }
}

impl Listening {
    /// A connection waiting to be accepted, TCP_NODELAY set on a TCP one.
    pub fn accept(&self) -> io::Result<Stream> {
        match self {
            Listening::Tcp(l) => {
                let (stream, _) = l.accept()?;
                let _ = stream.set_nodelay(true);
                Ok(Stream::Tcp(stream))
            }
            Listening::Unix(l) => Ok(Stream::Unix(l.accept()?.0)),
        }
    }

    /// Where it listens, for the log: `127.0.0.1:1883`, `unix socket
    /// /run/roost/roost.sock`.
    pub fn local(&self) -> io::Result<String> {
        match self {
            Listening::Tcp(l) => Ok(l.local_addr()?.to_string()),
            Listening::Unix(l) => {
                let addr = l.local_addr()?;
                let path = addr.as_pathname().unwrap_or("(unnamed)".as_ref());
                Ok(format!("unix socket {}", path.display()))
            }
        }
    }
}

/// Registration with the poll, for both.
macro_rules! source {
    ($t:ty) => {
        impl Source for $t {
            fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
                either!(self, s => s.register(r, t, i))
            }

            fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
                either!(self, s => s.reregister(r, t, i))
            }

            fn deregister(&mut self, r: &Registry) -> io::Result<()> {
                either!(self, s => s.deregister(r))
            }
        }
    };
}

source!(Stream);
source!(Listening);
