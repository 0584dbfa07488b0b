//! The batch protocol: many provider records in one message.
//!
//! Kademlia's `ADD_PROVIDER` carries one key, so a node holding thousands of
//! keys sends thousands of messages to each node that stores them, every
//! re-announcement. A batch carries every key of one keyspace region that the
//! receiver should store for the sender, with the sender's addresses once.
//! It runs on the same swarm as Kademlia (so the pre-shared key protects it)
//! and its records land in the same provider store lookups read; the
//! receiver takes the provider from the connection (never from the message)
//! and applies the same quotas and address rules as to `ADD_PROVIDER`.
//!
//! A batch also carries the keys the sender stopped holding, so their
//! records go at once rather than when they expire.
//!
//! Wire format (all integers big-endian), request:
//! `u32 n`, then `n` record keys of 32 bytes to store; `u32 r`, then `r`
//! record keys to remove; `u8 m`, then `m` times `u16 len` and a multiaddr
//! of `len` bytes. Response: `u32`, how many of
//! the records were stored. Anything else (a short or long message, a key of
//! another length, too many keys or addresses) is an error and stores
//! nothing. A new version of the format gets a new protocol name.

use std::io;

use futures::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use libp2p::{kad::RecordKey, request_response, Multiaddr, StreamProtocol};

/// The protocol name.
pub(crate) const PROTOCOL: StreamProtocol = StreamProtocol::new("/peerpull/provide-batch/1.0.0");

/// The most keys (stored and removed) in one message; larger batches are split.
pub(crate) const MAX_KEYS: usize = 8192;
/// The most addresses in one message.
pub(crate) const MAX_ADDRESSES: usize = crate::store::MAX_ADDRESSES;
/// Record keys are SHA-256 hashes (`keys::record_key`).
const KEY_LEN: usize = 32;
/// The longest multiaddr accepted.
const MAX_ADDRESS_LEN: usize = 512;
/// The largest request: every key and address at their longest.
const MAX_REQUEST_BYTES: usize = 8 + MAX_KEYS * KEY_LEN + 1 + MAX_ADDRESSES * (2 + MAX_ADDRESS_LEN);
const _: () = assert!(MAX_REQUEST_BYTES < 1 << 20, "a batch stays well under a megabyte");

/// Records to store for the sending node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    /// Records to store.
    pub(crate) keys: Vec<RecordKey>,
    /// Records to remove: the sender no longer holds these.
    pub(crate) removed: Vec<RecordKey>,
    /// The sender's addresses, its mirror's among them (see `agent`).
    pub(crate) addresses: Vec<Multiaddr>,
}

/// How many of a request's records the receiver stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Response {
    pub(crate) stored: u32,
}

/// The request-response codec of the batch protocol.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Codec;

/// Encodes `request`. Callers keep within [`MAX_KEYS`] and [`MAX_ADDRESSES`].
pub(crate) fn encode(request: &Request) -> Vec<u8> {
    let addresses: Vec<&Multiaddr> =
        request.addresses.iter().filter(|a| a.as_ref().len() <= MAX_ADDRESS_LEN).take(MAX_ADDRESSES).collect();
    let keys = &request.keys[..request.keys.len().min(MAX_KEYS)];
    let removed = &request.removed[..request.removed.len().min(MAX_KEYS - keys.len())];
    let mut out = Vec::with_capacity(8 + (keys.len() + removed.len()) * KEY_LEN + 64);
    for list in [keys, removed] {
        out.extend_from_slice(&u32::try_from(list.len()).unwrap_or(0).to_be_bytes());
        for key in list {
            out.extend_from_slice(key.as_ref());
        }
    }
    out.push(u8::try_from(addresses.len()).unwrap_or(0));
    for addr in addresses {
        let bytes = addr.as_ref();
        out.extend_from_slice(&u16::try_from(bytes.len()).unwrap_or(0).to_be_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

/// Decodes a request, refusing anything [`encode`] would not write.
pub(crate) fn decode(bytes: &[u8]) -> Result<Request, io::Error> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("bad provide batch: {what}"));
    let mut rest = bytes;
    let mut take = |n: usize| -> Result<&[u8], io::Error> {
        if rest.len() < n {
            return Err(bad("truncated"));
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let mut lists = [Vec::new(), Vec::new()];
    let mut total = 0;
    for list in &mut lists {
        let n = u32::from_be_bytes(take(4)?.try_into().map_err(|_| bad("truncated"))?) as usize;
        total += n;
        if total > MAX_KEYS {
            return Err(bad("too many keys"));
        }
        *list = (0..n).map(|_| take(KEY_LEN).map(|k| RecordKey::new(&k))).collect::<Result<Vec<_>, _>>()?;
    }
    let [keys, removed] = lists;
    let m = usize::from(take(1)?[0]);
    if m > MAX_ADDRESSES {
        return Err(bad("too many addresses"));
    }
    let mut addresses = Vec::with_capacity(m);
    for _ in 0..m {
        let len = usize::from(u16::from_be_bytes(take(2)?.try_into().map_err(|_| bad("truncated"))?));
        if len > MAX_ADDRESS_LEN {
            return Err(bad("address too long"));
        }
        addresses.push(Multiaddr::try_from(take(len)?.to_vec()).map_err(|_| bad("not a multiaddr"))?);
    }
    if !rest.is_empty() {
        return Err(bad("trailing bytes"));
    }
    Ok(Request { keys, removed, addresses })
}

async fn read_all<T: AsyncRead + Unpin + Send>(io: &mut T, limit: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    io.take(u64::try_from(limit + 1).unwrap_or(u64::MAX)).read_to_end(&mut buf).await?;
    if buf.len() > limit {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "provide batch too large"));
    }
    Ok(buf)
}

impl request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        decode(&read_all(io, MAX_REQUEST_BYTES).await?)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_all(io, 4).await?;
        let stored: [u8; 4] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad provide batch response"))?;
        Ok(Response { stored: u32::from_be_bytes(stored) })
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, request: Request) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&encode(&request)).await?;
        io.close().await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, response: Response) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&response.stored.to_be_bytes()).await?;
        io.close().await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn request(keys: usize) -> Request {
        Request {
            keys: (0..keys).map(|i| RecordKey::new(&[u8::try_from(i % 256).unwrap(); 32])).collect(),
            removed: (0..keys.min(3)).map(|i| RecordKey::new(&[u8::try_from(255 - i).unwrap(); 32])).collect(),
            addresses: vec!["/ip4/10.0.0.7/tcp/5001".parse().unwrap(), "/ip4/10.0.0.7/tcp/5000/http".parse().unwrap()],
        }
    }

    #[test]
    fn a_request_survives_the_round_trip() {
        for n in [0, 1, 300, MAX_KEYS - 3] {
            let r = request(n);
            assert_eq!(decode(&encode(&r)).unwrap(), r);
        }
    }

    #[test]
    fn malformed_requests_are_refused() {
        let good = encode(&request(3));
        for cut in [0, 3, 4 + 32, 4 + 3 * 32 + 4 + 31, good.len() - 1] {
            assert!(decode(&good[..cut]).is_err(), "truncated at {cut}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(decode(&trailing).is_err());
        let mut too_many = good.clone();
        too_many[..4].copy_from_slice(&u32::try_from(MAX_KEYS + 1).unwrap().to_be_bytes());
        assert!(decode(&too_many).is_err());
        let with_removed = |removed: usize| {
            let stored = MAX_KEYS - 1;
            let mut bytes = u32::try_from(stored).unwrap().to_be_bytes().to_vec();
            bytes.extend(vec![7u8; stored * KEY_LEN]);
            bytes.extend_from_slice(&u32::try_from(removed).unwrap().to_be_bytes());
            bytes.extend(vec![9u8; removed * KEY_LEN]);
            bytes.push(0);
            bytes
        };
        assert!(decode(&with_removed(1)).is_ok());
        assert!(decode(&with_removed(2)).is_err(), "the limit counts stored and removed keys together");
        let mut not_addr = encode(&Request { keys: vec![], removed: vec![], addresses: vec![] });
        not_addr[8] = 1;
        not_addr.extend_from_slice(&[0, 3, 0xff, 0xff, 0xff]);
        assert!(decode(&not_addr).is_err());
    }
}
