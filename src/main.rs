use std::process::ExitCode;

// mimalloc hands pages back a second after they empty (its default). A scan's reading
// threads free an object's worth of pages every few milliseconds; purging them within
// 5 ms (as earlier releases did) kept the peak RSS of a scan of many objects a tenth
// lower, but faulting the pages back in cost 5 to 7 per cent of the time with every rule
// on, and the peak for one 100 MB object barely moved (126 against 127 MiB).
// `MIMALLOC_PURGE_DELAY` (milliseconds) trades otherwise.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    geotrail::cli::main()
}
