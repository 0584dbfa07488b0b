use super::*;

fn node(n: u8) -> Provider {
    Provider { peer: PeerId::random(), mirror: SocketAddr::from(([127, 0, 0, n], 5000)), zone: Default::default() }
}

const PATH: &str = "/v2/library/a/blobs/sha256:x?ns=docker.io";

#[test]
fn a_request_reads_back_as_the_role_it_was_sent_in() {
    let this = node(7);
    let remote = Some(IpAddr::from([127, 0, 0, 1]));
    let holder = PeerRequest::holder(Method::GET, PATH).headers(Some(&this), None, None);
    assert_eq!(Sender::of(&holder, remote), Sender::Peer);
    assert_eq!(holder.get(VERSION).map(|v| v.as_bytes()), Some(PROTOCOL.as_bytes()));
    assert!(!holder.contains_key(header::RANGE), "a whole body is asked without a range");

    let gone = PeerId::random();
    let fetcher = PeerRequest::fetcher(PATH, true, Some(gone)).headers(Some(&this), None, None);
    assert_eq!(Sender::of(&fetcher, remote), Sender::Follower { named: Some(Box::new(this)), gone: Some(gone) });
    let plain = PeerRequest::fetcher(PATH, false, None).headers(Some(&this), None, None);
    assert_eq!(Sender::of(&plain, remote), Sender::Follower { named: None, gone: None });

    assert_eq!(Sender::of(&HeaderMap::new(), remote), Sender::Client);
    assert!(!Sender::Client.is_peer() && Sender::Peer.is_peer());
    let mut unknown = holder.clone();
    unknown.insert("x-unknown-to-this-version", HeaderValue::from_static("1"));
    unknown.insert(VERSION, HeaderValue::from_static("2"));
    assert_eq!(Sender::of(&unknown, remote), Sender::Peer, "unknown headers are ignored");
}

#[test]
fn ranges_go_out_as_asked() {
    let range = ByteRange { start: 10, end_inclusive: 19 };
    let resumed = PeerRequest::holder(Method::GET, PATH).range(range).headers(None, None, None);
    assert_eq!(resumed.get(header::RANGE).map(|v| v.as_bytes()), Some(&b"bytes=10-19"[..]));
    let as_asked = PeerRequest {
        part: Part::AsAsked(HeaderValue::from_static("bytes=0-")),
        ..PeerRequest::holder(Method::HEAD, PATH)
    };
    assert_eq!(as_asked.headers(None, None, None).get(header::RANGE).map(|v| v.as_bytes()), Some(&b"bytes=0-"[..]));
}

#[test]
fn answers_are_classified_by_status_part_and_marks() {
    let whole = PeerRequest::holder(Method::GET, PATH);
    let part = whole.range(ByteRange { start: 0, end_inclusive: 9 });
    let none = HeaderMap::new();
    assert_eq!(classify(&whole, StatusCode::OK, &none), Answer::Served);
    assert_eq!(classify(&whole, StatusCode::PARTIAL_CONTENT, &none), Answer::Other, "a whole body was asked for");
    assert_eq!(classify(&part, StatusCode::PARTIAL_CONTENT, &none), Answer::Served);
    assert_eq!(classify(&part, StatusCode::OK, &none), Answer::Other, "exactly the range was asked for");
    assert_eq!(classify(&whole, StatusCode::NOT_FOUND, &none), Answer::NotHere);
    assert_eq!(classify(&whole, StatusCode::TOO_MANY_REQUESTS, &none), Answer::Busy);
    let mut failed = HeaderMap::new();
    mark_upstream_failed(&mut failed);
    assert_eq!(classify(&whole, StatusCode::NOT_FOUND, &failed), Answer::UpstreamFailed);

    let member = node(3);
    let mut sent = HeaderMap::new();
    send_to(&mut sent, &member);
    assert_eq!(sent_to(&sent), Some(member));
    let follower = PeerRequest::fetcher(PATH, true, None);
    assert_eq!(classify(&follower, StatusCode::TEMPORARY_REDIRECT, &sent), Answer::FollowElsewhere);
    let not_follower = PeerRequest::fetcher(PATH, false, None);
    assert_eq!(classify(&not_follower, StatusCode::TEMPORARY_REDIRECT, &sent), Answer::Other);
}

#[test]
fn a_follower_is_taken_at_the_connections_address() {
    let this = node(7);
    let value = node_value(&this);
    let remote = IpAddr::from([10, 0, 0, 3]);
    let parsed = follower(&value, remote).expect("parses");
    assert_eq!(parsed.peer, this.peer);
    assert_eq!(parsed.mirror, SocketAddr::new(remote, 5000), "the connection's address, the named port");
    let local = follower(&value, IpAddr::from([127, 0, 0, 1])).expect("parses");
    assert_eq!(local.mirror, this.mirror, "on one host, the loopback address named");
    let named_public = format!("{} 10.0.0.9:5000", this.peer);
    let spoofed = follower(&named_public, IpAddr::from([127, 0, 0, 1])).expect("parses");
    assert_eq!(spoofed.mirror.ip(), IpAddr::from([127, 0, 0, 1]), "never an address other than the connection's");
    let (public, looped) = (node(1), Provider { mirror: SocketAddr::from(([10, 0, 0, 1], 5000)), ..node(1) });
    assert!(reachable(&public, &public), "a loopback member of a fetcher on loopback");
    assert!(!reachable(&public, &looped), "no loopback member from a fetcher elsewhere");
    assert!(reachable(&looped, &public) && reachable(&looped, &looped));
    assert!(follower("not-a-peer 127.0.0.7:5000", remote).is_none());
    assert!(follower(&format!("{} 127.0.0.7:0", this.peer), remote).is_none(), "port 0");
    assert!(follower(&format!("{} 5000", this.peer), remote).is_none(), "no address");
    let mut bad = HeaderMap::new();
    bad.insert(FOLLOW, HeaderValue::from_static("x 127.0.0.1:1"));
    assert!(sent_to(&bad).is_none());
}

#[test]
fn a_follower_and_the_follower_it_is_sent_to_carry_their_zones() {
    let this = Provider { zone: "zone-b".parse().unwrap_or_default(), ..node(7) };
    let remote = Some(IpAddr::from([127, 0, 0, 1]));
    let asked = PeerRequest::fetcher(PATH, true, None).headers(Some(&this), None, None);
    assert_eq!(Sender::of(&asked, remote), Sender::Follower { named: Some(Box::new(this)), gone: None });
    let mut answer = HeaderMap::new();
    send_to(&mut answer, &this);
    assert_eq!(sent_to(&answer), Some(this));
    let zoneless = node(8);
    let mut answer = HeaderMap::new();
    send_to(&mut answer, &zoneless);
    assert!(!answer.contains_key(ZONE), "no zone, no header");
    assert_eq!(sent_to(&answer), Some(zoneless));
}
