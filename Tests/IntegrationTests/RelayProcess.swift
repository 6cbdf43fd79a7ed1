import Foundation
import Testing

/// The built `outbox-relay` executable, run as a child process with its output captured.
final class RelayProcess: @unchecked Sendable {
    let process = Process()
    private let output: URL

    static var executable: URL {
        if let path = ProcessInfo.processInfo.environment["OUTBOX_RELAY_BIN"] { return URL(fileURLWithPath: path) }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".build/debug/outbox-relay")
    }

    init(_ arguments: [String], environment: [String: String] = [:], executable: URL = RelayProcess.executable) throws {
        output = FileManager.default.temporaryDirectory.appendingPathComponent("outbox-relay-\(UUID().uuidString).log")
        FileManager.default.createFile(atPath: output.path, contents: nil)
        let handle = try FileHandle(forWritingTo: output)
        process.executableURL = executable
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for name in ["DATABASE_URL", "REDIS_URL", "NOTIFY_SOCKET"] { env[name] = nil }
        env.merge(environment) { $1 }
        process.environment = env
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        try? FileManager.default.removeItem(at: output)
    }

    var log: String { (try? String(contentsOf: output, encoding: .utf8)) ?? "" }

    /// Waits until the output contains `text`; returns whether it did within `seconds`.
    @discardableResult
    func waitForLog(_ text: String, seconds: Double) -> Bool {
        let deadline = Date(timeIntervalSinceNow: seconds)
        while Date() < deadline {
            if log.contains(text) { return true }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return false
    }

    func signal(_ signal: Int32) {
        kill(process.processIdentifier, signal)
    }

    /// Waits for the process to exit; returns its exit status, or nil if it is still running.
    func waitForExit(seconds: Double) -> Int32? {
        let deadline = Date(timeIntervalSinceNow: seconds)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        return process.isRunning ? nil : process.terminationStatus
    }

    /// Runs the relay with `arguments` to completion and returns its exit status and output.
    static func run(_ arguments: [String], environment: [String: String] = [:], seconds: Double = 20) throws -> (Int32?, String) {
        let relay = try RelayProcess(arguments, environment: environment)
        let status = relay.waitForExit(seconds: seconds)
        return (status, relay.log)
    }
}

/// A datagram socket standing in for systemd's `NOTIFY_SOCKET`, collecting what the relay sends.
final class NotifySocket {
    let path: String
    private let fd: Int32

    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("notify-\(UUID().uuidString.prefix(8)).sock").path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else { throw TestSetupError.timedOut("cannot bind \(path)") }
        var limit = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit {
        close(fd)
        unlink(path)
    }

    /// Reads datagrams until one contains `state` or `seconds` pass; returns everything received.
    func waitFor(_ state: String, seconds: Double, into received: inout [String]) -> Bool {
        let deadline = Date(timeIntervalSinceNow: seconds)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while Date() < deadline {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count > 0 {
                let message = String(decoding: buffer[0..<count], as: UTF8.self)
                received.append(message)
                if message.split(separator: "\n").contains(Substring(state)) { return true }
            }
        }
        return false
    }
}
