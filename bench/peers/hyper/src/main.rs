//! ringd-hyper-peer: ringd's `GET /users/{id}` served the way a typical Rust
//! service would serve it - hyper 0.14 on Tokio, a read transaction per request
//! on ringd's own LMDB database. The benchmark's "seed's Rust stack" peer.
//!
//!     ringd-hyper-peer --listen 127.0.0.1:PORT --db DIR
//!
//! Responses match ringd's router (net/router.c) byte for byte in status and
//! body: 200 with the record as stored, 404 `{"error":"not found"}`,
//! 400 `{"error":"bad id"}`, 500 `{"error":"internal error"}`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use hyper::header::{HeaderValue, CONTENT_TYPE, SERVER};
use hyper::server::conn::AddrIncoming;
use hyper::service::{make_service_fn, service_fn};
use hyper::{Body, Method, Request, Response, Server, StatusCode};
use lmdb::{Database, DatabaseFlags, Environment, EnvironmentFlags, Transaction};
use tokio::net::TcpSocket;
use tokio::signal::unix::{signal, SignalKind};

const NAME: &str = "ringd-hyper-peer";

// The environment's sizes, identical for every opener (store/store.h): the
// first process to open an environment fixes its reader table for everyone.
const STORE_MAP_SIZE: usize = 1 << 35;
const STORE_MAX_READERS: u32 = 512;
const STORE_MAX_DBS: u32 = 4;
const STORE_DB_USERS: &str = "users";
const STORE_DB_META: &str = "meta";
const STORE_FORMAT_KEY: &[u8] = b"format";
const STORE_FORMAT_VALUE: &[u8] = b"ringd-users-v1";

// Keys are MDB_INTEGERKEY, i.e. a native-endian size_t (store/key.h): a u64's
// native bytes only on a 64-bit target.
const _: () = assert!(std::mem::size_of::<usize>() == std::mem::size_of::<u64>());

// ringd's listen(2) backlog (core/server.c), so -c1024 connects without SYN drops.
const LISTEN_BACKLOG: u32 = 4096;

const BODY_NOT_FOUND: &[u8] = br#"{"error":"not found"}"#;
const BODY_BAD_ID: &[u8] = br#"{"error":"bad id"}"#;
const BODY_INTERNAL: &[u8] = br#"{"error":"internal error"}"#;

/// ringd's database, opened read-only.
struct Store {
    env: Environment,
    users: Database,
}

impl Store {
    /// Opens dir as ringd's server does (MDB_RDONLY | MDB_NOTLS | MDB_NORDAHEAD)
    /// and checks that it is a ringd database of the expected format.
    fn open(dir: &Path) -> Result<Store, String> {
        let d = dir.display();
        let env = Environment::new()
            .set_flags(
                EnvironmentFlags::READ_ONLY
                    | EnvironmentFlags::NO_TLS
                    | EnvironmentFlags::NO_READAHEAD,
            )
            .set_map_size(STORE_MAP_SIZE)
            .set_max_readers(STORE_MAX_READERS)
            .set_max_dbs(STORE_MAX_DBS)
            .open(dir)
            .map_err(|e| format!("{}: cannot open the LMDB environment: {}", d, e))?;

        let meta = env
            .open_db(Some(STORE_DB_META))
            .map_err(|e| format!("{}: not a ringd database (no meta table: {})", d, e))?;
        {
            let txn = env
                .begin_ro_txn()
                .map_err(|e| format!("{}: cannot begin a transaction: {}", d, e))?;
            match txn.get(meta, &STORE_FORMAT_KEY) {
                Ok(v) if v == STORE_FORMAT_VALUE => {}
                Ok(v) => {
                    return Err(format!(
                        "{}: format {}, expected ringd-users-v1",
                        d,
                        String::from_utf8_lossy(v)
                    ))
                }
                Err(e) => {
                    return Err(format!(
                        "{}: not a ringd database (no format marker: {})",
                        d, e
                    ))
                }
            }
        }

        // A read-only open takes the table's flags from the file; check them,
        // since lookups below encode keys for MDB_INTEGERKEY.
        let users = env
            .open_db(Some(STORE_DB_USERS))
            .map_err(|e| format!("{}: cannot open the users table: {}", d, e))?;
        let flags = env
            .get_db_flags(users)
            .map_err(|e| format!("{}: cannot read the users table's flags: {}", d, e))?;
        if !flags.contains(DatabaseFlags::INTEGER_KEY) {
            return Err(format!("{}: the users table is not MDB_INTEGERKEY", d));
        }
        Ok(Store { env, users })
    }

    /// The record of user id, copied out of the map; None when absent.
    ///
    /// One read transaction per lookup (begin, get, copy, abort), as a service
    /// written the obvious way with this crate does. The copy is needed: the
    /// slice LMDB returns points into the map and is only valid while the
    /// transaction lives. ringd instead keeps one long-lived reader per shard.
    fn get(&self, id: u64) -> Result<Option<Vec<u8>>, lmdb::Error> {
        let txn = self.env.begin_ro_txn()?;
        let key = (id as usize).to_ne_bytes();
        let record = match txn.get(self.users, &key) {
            Ok(v) => Some(v.to_vec()),
            Err(lmdb::Error::NotFound) => None,
            Err(e) => return Err(e),
        };
        drop(txn); // mdb_txn_abort: a read transaction has nothing to commit
        Ok(record)
    }
}

/// ringd's router_parse_id: a decimal 1..=2^64-1, leading zeros allowed,
/// nothing else (no sign, no spaces).
fn parse_id(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match s.parse::<u64>() {
        Ok(0) | Err(_) => None, // Err: overflow
        Ok(id) => Some(id),
    }
}

fn json(status: StatusCode, body: Body) -> Response<Body> {
    let mut res = Response::new(body);
    *res.status_mut() = status;
    let headers = res.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(SERVER, HeaderValue::from_static(NAME));
    res // hyper adds date and content-length
}

fn route(store: &Store, req: &Request<Body>) -> Response<Body> {
    // HEAD as GET (hyper drops the body), as ringd does. uri().path() has no
    // query string: like ringd, the query never takes part in routing.
    let id = match (req.method(), req.uri().path().strip_prefix("/users/")) {
        (&Method::GET, Some(id)) | (&Method::HEAD, Some(id)) => id,
        _ => return json(StatusCode::NOT_FOUND, Body::from(BODY_NOT_FOUND)),
    };
    let id = match parse_id(id) {
        Some(id) => id,
        None => return json(StatusCode::BAD_REQUEST, Body::from(BODY_BAD_ID)),
    };
    match store.get(id) {
        Ok(Some(record)) => json(StatusCode::OK, Body::from(record)),
        Ok(None) => json(StatusCode::NOT_FOUND, Body::from(BODY_NOT_FOUND)),
        Err(e) => {
            eprintln!("{}: store_get_failed id={} err=\"{}\"", NAME, id, e);
            json(StatusCode::INTERNAL_SERVER_ERROR, Body::from(BODY_INTERNAL))
        }
    }
}

fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

async fn serve(addr: SocketAddr, db: &Path, store: Arc<Store>) -> Result<(), String> {
    let listener = listen(addr).map_err(|e| format!("cannot listen on {}: {}", addr, e))?;
    let mut incoming = AddrIncoming::from_listener(listener)
        .map_err(|e| format!("cannot listen on {}: {}", addr, e))?;
    incoming.set_nodelay(true); // as ringd: each response is one write already

    let make_service = make_service_fn(move |_conn| {
        let store = Arc::clone(&store);
        async move {
            Ok::<_, Infallible>(service_fn(move |req| {
                let res = route(&store, &req);
                async move { Ok::<_, Infallible>(res) }
            }))
        }
    });
    // HTTP/1.1 keep-alive is hyper's default. pipeline_flush: answer a batch
    // of pipelined requests with one write instead of one per response.
    let server = Server::builder(incoming)
        .http1_pipeline_flush(true)
        .serve(make_service);

    // Handlers first, so a signal right after the "listening" line is not lost.
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {}", e))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {}", e))?;
    eprintln!(
        "{}: listening on {} db={}",
        NAME,
        server.local_addr(),
        db.display()
    );

    // Exit at once on a signal: dropping the server and then the runtime closes
    // every connection (no drain; the harness only needs the process gone).
    tokio::select! {
        r = server => r.map_err(|e| format!("server error: {}", e)),
        _ = term.recv() => { eprintln!("{}: SIGTERM, exiting", NAME); Ok(()) }
        _ = int.recv() => { eprintln!("{}: SIGINT, exiting", NAME); Ok(()) }
    }
}

const USAGE: &str = "usage: ringd-hyper-peer --listen ADDR:PORT --db DIR";

fn parse_args() -> Result<(SocketAddr, PathBuf), String> {
    let mut listen = None;
    let mut db = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => {
                let v = args.next().ok_or("--listen needs ADDR:PORT")?;
                listen = Some(
                    v.parse::<SocketAddr>()
                        .map_err(|e| format!("--listen {}: {}", v, e))?,
                );
            }
            "--db" => db = Some(PathBuf::from(args.next().ok_or("--db needs a directory")?)),
            "-h" | "--help" => {
                println!("{}", USAGE);
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument '{}'", arg)),
        }
    }
    match (listen, db) {
        (Some(l), Some(d)) => Ok((l, d)),
        _ => Err("--listen and --db are required".to_string()),
    }
}

fn main() -> ExitCode {
    let (addr, db) = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{}: {}\n{}", NAME, e, USAGE);
            return ExitCode::from(2);
        }
    };
    let store = match Store::open(&db) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("{}: {}", NAME, e);
            return ExitCode::FAILURE;
        }
    };
    // Current-thread runtime: one thread serves every connection, as one ringd
    // shard does (`--shards 1`) and as nginx and h2o run with one worker, so
    // the benchmark compares one core's work. Lookups are a few microseconds of
    // memory-mapped reads, so they run inline rather than on spawn_blocking.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{}: cannot start the Tokio runtime: {}", NAME, e);
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(addr, &db, store)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}: {}", NAME, e);
            ExitCode::FAILURE
        }
    }
}
