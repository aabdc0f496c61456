use std::io::Write;

// mimalloc hands pages back a second after they empty (its default). A scan's reading
// threads free an object's worth of pages every few milliseconds; purging them within
// 5 ms (as earlier releases did) kept the peak RSS of a scan of many objects a tenth
// lower, but faulting the pages back in cost 5 to 7 per cent of the time with every rule
// on, and the peak for one 100 MB object barely moved (126 against 127 MiB).
// `MIMALLOC_PURGE_DELAY` (milliseconds) trades otherwise.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let status = geotrail::cli::main();
    // `_exit` below skips the runtime's own flush of standard output.
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: `main` has returned: the scan's threads are joined, its runtime is shut
    // down, a state file's last commit is durable and the file closed, and output is
    // flushed above. What `_exit` skips are the C runtime's exit handlers, and with them
    // mimalloc's, which walks every page of the heap to free it: the state cache is left
    // to the process's end (`WriteBackCache::end_at_exit`), and at organisation scale
    // that walk was about 20 ms after the scan, for memory the kernel takes back anyway.
    unsafe { libc::_exit(i32::from(status)) }
}
