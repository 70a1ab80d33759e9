//! The C ABI driven as a C caller would: raw pointers, callbacks with a context, argument
//! buffers. Malformed buffers must come back as config errors through the callback, never as
//! a panic or a read past the end; every operation reports exactly once.

#![allow(unsafe_code)]

use std::ffi::{c_char, CStr};
use std::sync::mpsc;

use headwater_ffi::wire::Writer;
use headwater_ffi::*;

struct Reported {
    status: HwStatus,
    message: String,
    data: Vec<u8>,
}

unsafe extern "C" fn on_result(context: usize, result: *const HwResult) {
    // SAFETY: the tests pass a leaked Sender as the context and the library a valid result.
    unsafe {
        let sender = &*(context as *const mpsc::Sender<Reported>);
        let r = &*result;
        let message = String::from_utf8_lossy(std::slice::from_raw_parts(r.message, r.message_len)).into_owned();
        let data = if r.data_len == 0 { Vec::new() } else { std::slice::from_raw_parts(r.data, r.data_len).to_vec() };
        sender.send(Reported { status: r.status, message, data }).expect("the test is waiting");
    }
}

fn channel() -> (usize, mpsc::Receiver<Reported>) {
    let (tx, rx) = mpsc::channel();
    (Box::into_raw(Box::new(tx)) as usize, rx)
}

fn record(topic: &str, value: &[u8]) -> Vec<u8> {
    let mut w = Writer::default();
    w.str(topic).i32(-1).i64(-1).opt_bytes(None).opt_bytes(Some(value)).count(0);
    w.0
}

#[test]
fn sends_report_once_and_malformed_buffers_are_config_errors() {
    let mut errbuf = [0 as c_char; 256];
    // SAFETY: valid pointers throughout; handles are used while live and freed once.
    unsafe {
        let broker = hw_broker_start(std::ptr::null(), std::ptr::null(), 0, errbuf.as_mut_ptr(), errbuf.len());
        assert!(!broker.is_null(), "{:?}", CStr::from_ptr(errbuf.as_ptr()));
        let address = hw_broker_address(broker);
        let options = HwProducerOptions {
            client: HwClientOptions { bootstrap: address, client_id: std::ptr::null(), request_timeout_ms: 0 },
            acks: HW_ACKS_ALL,
            linger_ms: 0,
            batch_bytes: 0,
            compression: HW_COMPRESSION_NONE,
            idempotence: true,
            delivery_timeout_ms: 0,
            unknown_topic_wait_ms: 0,
        };
        let producer = hw_producer_new(&options, errbuf.as_mut_ptr(), errbuf.len());
        assert!(!producer.is_null());
        let (context, results) = channel();

        // A record buffer cut short, one with bytes left over, and one whose string lies
        // about its length.
        let good = record("abi", b"value");
        let mut long = good.clone();
        long.push(0);
        let lying = [200, 0, 0, 0, b'a'];
        for bad in [&good[..good.len() - 3], &long[..], &lying[..]] {
            hw_producer_send(producer, bad.as_ptr(), bad.len(), Some(on_result), context);
            let r = results.recv().expect("a report");
            assert_eq!(r.status, HwStatus::Config, "{}", r.message);
        }

        let id = hw_producer_send(producer, good.as_ptr(), good.len(), Some(on_result), context);
        let r = results.recv().expect("a report");
        assert_eq!(r.status, HwStatus::Ok, "{}", r.message);
        // str topic, i32 partition, i64 offset, i64 timestamp.
        assert_eq!(&r.data[..7], &[3, 0, 0, 0, b'a', b'b', b'i']);
        assert_eq!(i64::from_le_bytes(r.data[11..19].try_into().unwrap()), 0, "the first offset");
        assert!(!hw_cancel(id), "a finished operation cannot be cancelled");
        assert!(results.try_recv().is_err(), "an operation reported twice");

        hw_producer_close(producer, Some(on_result), context);
        assert_eq!(results.recv().unwrap().status, HwStatus::Ok);
        hw_producer_send(producer, good.as_ptr(), good.len(), Some(on_result), context);
        assert_eq!(results.recv().unwrap().status, HwStatus::Closed);
        hw_producer_free(producer);
        assert!(hw_broker_stop(broker, errbuf.as_mut_ptr(), errbuf.len()));
        drop(Box::from_raw(context as *mut mpsc::Sender<Reported>));
    }
}

#[test]
fn constructors_name_the_bad_setting() {
    let mut errbuf = [0 as c_char; 64];
    let bootstrap = c"127.0.0.1:1";
    let options = HwProducerOptions {
        client: HwClientOptions { bootstrap: bootstrap.as_ptr(), client_id: std::ptr::null(), request_timeout_ms: 0 },
        acks: 7,
        linger_ms: -1,
        batch_bytes: 0,
        compression: HW_COMPRESSION_NONE,
        idempotence: true,
        delivery_timeout_ms: 0,
        unknown_topic_wait_ms: 0,
    };
    // SAFETY: valid pointers; an out-of-range acks is a config error, not undefined behaviour.
    let message = unsafe {
        assert!(hw_producer_new(&options, errbuf.as_mut_ptr(), errbuf.len()).is_null());
        CStr::from_ptr(errbuf.as_ptr()).to_string_lossy().into_owned()
    };
    assert!(message.starts_with("acks"), "{message}");

    let options = HwClientOptions { bootstrap: std::ptr::null(), client_id: std::ptr::null(), request_timeout_ms: 0 };
    // SAFETY: valid pointers; the message is truncated to the buffer and NUL-terminated.
    let message = unsafe {
        assert!(hw_admin_new(&options, errbuf.as_mut_ptr(), errbuf.len()).is_null());
        CStr::from_ptr(errbuf.as_ptr()).to_string_lossy().into_owned()
    };
    assert!(message.starts_with("bootstrap"), "{message}");

    let mut settings = Writer::default();
    settings.count(1).str("no_such_key").str("1");
    // SAFETY: as above.
    let message = unsafe {
        let b =
            hw_broker_start(std::ptr::null(), settings.0.as_ptr(), settings.0.len(), errbuf.as_mut_ptr(), errbuf.len());
        assert!(b.is_null());
        CStr::from_ptr(errbuf.as_ptr()).to_string_lossy().into_owned()
    };
    assert!(message.contains("no_such_key"), "{message}");
}
