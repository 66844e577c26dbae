//! Privilege separation with descriptors as values: the parent opens a file and a
//! listening socket, and hands them to a worker that reads and serves them without ever
//! opening anything itself (a real worker would drop its rights first: another user,
//! seccomp, landlock; opening is then beyond it, using what it was handed is not).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

use coproq::Fd;

fn main() -> coproq::Result<()> {
    let worker = coproq::fork(|parent| {
        // Counts the lines of a file it could not have opened.
        parent.handle("count_lines", |file: Fd| -> Result<usize, String> {
            let reader = BufReader::new(std::fs::File::from(file));
            let mut lines = 0;
            for line in reader.lines() {
                line.map_err(|e| format!("reading the file: {e}"))?;
                lines += 1;
            }
            Ok(lines)
        });
        // Accepts one connection on a socket it could not have bound, and answers it.
        parent.handle("serve_one", |listener: Fd| -> Result<String, String> {
            let listener = TcpListener::from(listener);
            let (mut connection, _) = listener.accept().map_err(|e| e.to_string())?;
            let mut request = String::new();
            connection
                .read_to_string(&mut request)
                .map_err(|e| e.to_string())?;
            connection
                .write_all(format!("hello, {request}").as_bytes())
                .map_err(|e| e.to_string())?;
            Ok(request)
        });
    })?;

    // The parent opens; the worker reads.
    let path = std::env::temp_dir().join(format!("coproq-descriptors-{}", std::process::id()));
    std::fs::write(&path, "one\ntwo\nthree\n").expect("a temporary file");
    let file = std::fs::File::open(&path).expect("the file just written");
    std::fs::remove_file(&path).expect("the file just written");
    // The worker reads it although its name is already gone.
    let lines: usize = worker.call("count_lines", Fd::from(file))?;
    println!("the worker counted {lines} lines in a file only the parent opened");
    assert_eq!(lines, 3);

    // The parent binds; the worker serves.
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port on 127.0.0.1");
    let address = listener.local_addr().expect("its address");
    let served = worker.call_async::<String>("serve_one", Fd::from(listener));
    let mut client = TcpStream::connect(address).expect("the worker's connection");
    client.write_all(b"client").expect("the request");
    client
        .shutdown(std::net::Shutdown::Write)
        .expect("end of request");
    let mut answer = String::new();
    client.read_to_string(&mut answer).expect("the answer");
    println!("the worker answered {answer:?} to {:?}", served.wait()?);
    assert_eq!(answer, "hello, client");

    worker.close();
    Ok(())
}
