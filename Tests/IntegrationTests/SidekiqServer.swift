import Foundation
import OutboxRelay
import OutboxRelayIO
import Testing

/// A real Sidekiq (Debian's ruby-sidekiq) working the test's Redis database, with the job classes
/// of Sidekiq/harness.rb, which record every run in the Redis list `test:runs`.
final class SidekiqServer {
    struct Run: Equatable {
        let jid: String
        let className: String
        let queue: String
        let args: NSArray
        let ranAt: Double
    }

    static var harness: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Sidekiq/harness.rb").path
    }

    let redisURL: String
    let namespace: String?
    /// More variables for Sidekiq and the harness (RELIABLE_JOB_TABLE, DATABASE_URL).
    let extraEnvironment: [String: String]
    private var process: Process?

    init(redisURL: String, namespace: String? = nil, environment: [String: String] = [:]) {
        self.redisURL = redisURL
        self.namespace = namespace
        self.extraEnvironment = environment
    }

    var environment: [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["REDIS_URL"] = redisURL
        env["SIDEKIQ_NAMESPACE"] = namespace
        env.merge(extraEnvironment) { $1 }
        return env
    }

    /// Starts `sidekiq` with one worker thread, so each queue's jobs run strictly in order, taking
    /// `queues` in strict priority.
    func start(queues: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/sidekiq")
        process.arguments = ["-r", Self.harness, "-c", "1", "-e", "production"] + queues.flatMap { ["-q", $0] }
        process.environment = environment
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
    }

    func stop() {
        guard let process, process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        self.process = nil
    }

    /// What Sidekiq's own API (Sidekiq::Queue, ScheduledSet, RetrySet, DeadSet) reports.
    func inspect() throws -> [String: Any] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/ruby")
        process.arguments = [Self.harness, "inspect"]
        process.environment = environment
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0, let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw TestSetupError.timedOut("ruby harness.rb inspect failed: \(String(decoding: data, as: UTF8.self))")
        }
        return object
    }

    /// Every recorded run, in the order they happened.
    func runs(client: RedisConnection) throws -> [Run] {
        let key = namespace.map { "\($0):test:runs" } ?? "test:runs"
        guard case .array(let items) = try client.send([RedisCommand("LRANGE", key, "0", "-1")])[0] else { return [] }
        return try items.map { item in
            let object = try JSONSerialization.jsonObject(with: Data((item.text ?? "").utf8)) as! [String: Any]
            return Run(
                jid: object["jid"] as! String, className: object["class"] as! String, queue: object["queue"] as? String ?? "",
                args: object["args"] as! NSArray, ranAt: object["ran_at"] as! Double)
        }
    }

    /// Waits until `count` runs were recorded, then a little longer to catch any extra run.
    func waitForRuns(_ count: Int, client: RedisConnection, seconds: Double = 60) throws -> [Run] {
        try waitUntil("\(count) Sidekiq runs", seconds: seconds) { try runs(client: client).count >= count }
        Thread.sleep(forTimeInterval: 0.5)
        return try runs(client: client)
    }
}
