//! A small static file server for `cargo xtask book --serve` when the installed mdBook has no
//! `serve` command: HTTP/1.1 `GET` and `HEAD` of the built book's files on 127.0.0.1, one
//! connection at a time, each closed after its answer.
//!
//! It is for one reader on the same machine, so it stays simple: no keep-alive, no ranges, no
//! caching headers. A path that climbs out of the book (`..`) is refused.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The longest request head read; a browser's is far shorter.
const MAX_HEAD: usize = 16 * 1024;

/// Serves `root` on 127.0.0.1:`port` until the process is stopped.
pub(crate) fn serve_forever(root: &Path, port: u16) -> anyhow::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    eprintln!(
        "book: serving {} on http://{}/ (Ctrl-C stops)",
        root.display(),
        listener.local_addr()?
    );
    serve(&listener, root, &AtomicBool::new(false));
    Ok(())
}

/// Answers the connections of `listener` from the files under `root`, one at a time, until
/// `stop` is set (it is read after each connection, so whoever sets it then connects once).
pub(crate) fn serve(listener: &TcpListener, root: &Path, stop: &AtomicBool) {
    for stream in listener.incoming() {
        if stop.load(Ordering::Acquire) {
            break;
        }
        // A client that goes away mid-request costs its own answer, never the server.
        if let Ok(stream) = stream {
            let _ = answer(stream, root);
        }
    }
}

/// Reads one request from `stream` and answers it.
fn answer(mut stream: TcpStream, root: &Path) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // The rest of the head is read and ignored, so the client is not reset mid-send.
    let mut head = request_line.len();
    loop {
        let mut line = String::new();
        let read = reader.read_line(&mut line)?;
        head += read;
        if read == 0 || line == "\r\n" || line == "\n" || head > MAX_HEAD {
            break;
        }
    }
    let mut words = request_line.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if method != "GET" && method != "HEAD" {
        return respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            b"GET or HEAD only\n",
            true,
        );
    }
    match resolve(root, target).and_then(|file| Some((std::fs::read(&file).ok()?, file))) {
        Some((body, file)) => respond(
            &mut stream,
            "200 OK",
            content_type(&file),
            &body,
            method == "GET",
        ),
        None => respond(
            &mut stream,
            "404 Not Found",
            "text/plain",
            b"not found\n",
            true,
        ),
    }
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
    with_body: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if with_body {
        stream.write_all(body)?;
    }
    stream.flush()
}

/// The file a request target names under `root`: `%XX` decoded, the query dropped, a folder's
/// `index.html`; `None` for a path that leaves `root` or names nothing.
fn resolve(root: &Path, target: &str) -> Option<PathBuf> {
    let path = target.split(['?', '#']).next()?;
    let path = percent_decode(path)?;
    let mut file = root.to_path_buf();
    for component in Path::new(path.trim_start_matches('/')).components() {
        match component {
            Component::Normal(part) => file.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    if file.is_dir() {
        file.push("index.html");
    }
    file.is_file().then_some(file)
}

/// `%20` and the like decoded; `None` when malformed or not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = std::str::from_utf8(bytes.get(at + 1..at + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The content type of a book file, by its extension.
fn content_type(file: &Path) -> &'static str {
    match file.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "txt" | "md" | "yml" | "yaml" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// One request to `addr`, the whole answer as text.
    fn get(addr: std::net::SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    }

    #[test]
    fn it_serves_the_books_files_and_nothing_outside_them() {
        let root = std::env::temp_dir().join(format!("xtask-serve-{}", std::process::id()));
        std::fs::create_dir_all(root.join("w05")).unwrap();
        std::fs::write(root.join("index.html"), "<p>front</p>").unwrap();
        std::fs::write(root.join("w05/a b.html"), "<p>lesson</p>").unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| serve(&listener, &root, &stop));
            let front = get(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
            assert!(front.starts_with("HTTP/1.1 200 OK\r\n"), "{front}");
            assert!(
                front.contains("text/html") && front.ends_with("<p>front</p>"),
                "{front}"
            );
            let lesson = get(addr, "GET /w05/a%20b.html?x=1 HTTP/1.1\r\n\r\n");
            assert!(lesson.ends_with("<p>lesson</p>"), "{lesson}");
            let head = get(addr, "HEAD /index.html HTTP/1.1\r\n\r\n");
            assert!(
                head.contains("Content-Length: 12") && head.ends_with("\r\n\r\n"),
                "{head}"
            );
            for outside in ["/../etc/passwd", "/w05/../../x", "/nope.html"] {
                let answer = get(addr, &format!("GET {outside} HTTP/1.1\r\n\r\n"));
                assert!(answer.starts_with("HTTP/1.1 404"), "{outside}: {answer}");
            }
            let post = get(addr, "POST / HTTP/1.1\r\n\r\n");
            assert!(post.starts_with("HTTP/1.1 405"), "{post}");
            stop.store(true, Ordering::Release);
            // The server reads the flag after a connection: this one ends it.
            let _ = TcpStream::connect(addr);
        });
        std::fs::remove_dir_all(&root).unwrap();
    }
}
