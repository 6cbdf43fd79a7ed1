import ArgumentParser

/// The database of the one-shot commands (migrate, status, dead-letters).
struct DatabaseOptions: ParsableArguments {
    @Option(help: ArgumentHelp("libpq connection string or postgresql:// URL (default: $DATABASE_URL).", valueName: "url"))
    var databaseURL: String?

    /// A connection to the database named by the flag or `DATABASE_URL`.
    func session() throws -> DatabaseSession {
        try DatabaseSession(url: try ConnectionOptions.databaseURL(databaseURL))
    }
}
