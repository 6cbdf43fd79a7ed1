// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "outbox-relay",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "outbox-relay", targets: ["outbox-relay"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        // C libraries: module maps and shims only.
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "CHiredis", providers: [.apt(["libhiredis-dev"])]),
        .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd", providers: [.apt(["libsystemd-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        // glibc's mallopt, which its Glibc module leaves out.
        .systemLibrary(name: "CMalloc"),

        // Relay core: plain Swift values and decisions, no C and no sockets.
        .target(
            name: "OutboxRelay",
            dependencies: [.product(name: "Logging", package: "swift-log")]
        ),
        // Adapters: the only code that touches libpq, hiredis or libsystemd.
        .target(
            name: "OutboxRelayIO",
            dependencies: ["OutboxRelay", "CLibPQ", "CHiredis", "CSystemd", "COpenSSL", "CMalloc"]
        ),
        // The daemon: run loop, connections' lifecycle, graceful shutdown.
        .target(
            name: "OutboxRelayDaemon",
            dependencies: [
                "OutboxRelay", "OutboxRelayIO",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        // Thin CLI: flags into a configuration, then run.
        .executableTarget(
            name: "outbox-relay",
            dependencies: [
                "OutboxRelay", "OutboxRelayIO", "OutboxRelayDaemon",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // `make bench`: throughput, latency and resources of the release build.
        .executableTarget(name: "outbox-relay-bench", dependencies: ["OutboxRelay", "OutboxRelayIO"]),
        .testTarget(name: "OutboxRelayTests", dependencies: ["OutboxRelay"]),
        // The deterministic simulation of the delivery protocol: the real LeaseMachine and the
        // relay's real Lua scripts (run by Lua 5.1, as in Redis) against models of both servers.
        .systemLibrary(name: "CLua", path: "Tests/CLua", pkgConfig: "lua5.1", providers: [.apt(["liblua5.1-0-dev"])]),
        .testTarget(
            name: "SimulationTests", dependencies: ["OutboxRelay", "CLua"],
            // Optimized even in debug builds: make test runs 10,000 seeds.
            swiftSettings: [.unsafeFlags(["-O"])]),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "OutboxRelay", "OutboxRelayIO", "OutboxRelayDaemon",
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["Sidekiq"]
        ),
    ]
)
