import CLua
import OutboxRelay

/// The relay's Lua scripts (``FencedPush``), run by Lua 5.1 as Redis runs them, against a
/// ``RedisModel``: `redis.call` raises on an error reply and the script stops there, keeping the
/// writes it made before, as real Redis does; `redis.pcall` returns the error as `{err = …}`.
final class LuaScripts {
    enum Script: Int, CaseIterable {
        case claim, push, release, claimGroup, releaseGroup, smallPush

        var source: String {
            switch self {
            case .claim: FencedPush.claimScript
            case .push: FencedPush.pushScript
            case .release: FencedPush.releaseScript
            case .claimGroup: FencedPush.claimGroupScript
            case .releaseGroup: FencedPush.releaseGroupScript
            case .smallPush: FencedPush.smallPushScript
            }
        }
    }

    private let state: OpaquePointer
    private var redis: RedisModel?

    init() {
        state = luaL_newstate()
        luaL_openlibs(state)
        // The raw call never raises (a longjmp through Swift frames is undefined); the Lua side raises.
        lua_pushlightuserdata(state, Unmanaged.passUnretained(self).toOpaque())
        lua_pushcclosure(state, { state in LuaScripts.rawCall(state) }, 1)
        shim_lua_setglobal(state, "__redis_raw")
        let prelude = """
            redis = {}
            function redis.call(...)
              local ok, result = __redis_raw(...)
              if not ok then error(result, 2) end
              return result
            end
            function redis.pcall(...)
              local ok, result = __redis_raw(...)
              if not ok then return {err = result} end
              return result
            end
            function redis.error_reply(message) return {err = message} end
            function redis.status_reply(message) return {ok = message} end
            """
        precondition(load(prelude, name: "prelude") == nil)
        for script in Script.allCases {
            precondition(load("function __script_\(script.rawValue)()\n\(script.source)\nend", name: "\(script)") == nil, "\(script) does not compile")
        }
    }

    deinit {
        lua_close(state)
    }

    private func load(_ source: String, name: String) -> String? {
        let bytes = Array(source.utf8)
        let loaded = bytes.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { luaL_loadbuffer(state, $0.baseAddress, $0.count, name) }
        }
        guard loaded == 0, lua_pcall(state, 0, 0, 0) == 0 else {
            let message = String(cString: lua_tolstring(state, -1, nil))
            shim_lua_pop(state, 1)
            return message
        }
        return nil
    }

    /// Runs `script` with `KEYS` and `ARGV` against `redis`, converting its result as Redis does.
    func run(_ script: Script, keys: [[UInt8]], argv: [[UInt8]], on redis: RedisModel) -> RedisReply {
        self.redis = redis
        defer { self.redis = nil }
        for (name, values) in [("KEYS", keys), ("ARGV", argv)] {
            lua_createtable(state, Int32(values.count), 0)
            for (index, value) in values.enumerated() {
                push(value)
                lua_rawseti(state, -2, Int32(index + 1))
            }
            shim_lua_setglobal(state, name)
        }
        return call("__script_\(script.rawValue)")
    }

    /// Runs Lua `source` as a script of its own (for tests of the model itself).
    func runSource(_ source: String, on redis: RedisModel) -> RedisReply {
        if let error = load("function __adhoc()\n\(source)\nend", name: "adhoc") { return .error(error) }
        self.redis = redis
        defer { self.redis = nil }
        return call("__adhoc")
    }

    /// Calls the global function `name` and converts its result as Redis does.
    private func call(_ name: String) -> RedisReply {
        shim_lua_getglobal(state, name)
        guard lua_pcall(state, 0, 1, 0) == 0 else {
            let message = lua_tolstring(state, -1, nil).map { String(cString: $0) } ?? "script error"
            shim_lua_pop(state, 1)
            return .error("ERR \(message)")
        }
        let reply = reply(at: -1)
        shim_lua_pop(state, 1)
        return reply
    }

    /// Runs a `RedisCommand` that is an `EVALSHA` of one of the scripts (as the relay sends it).
    func run(_ command: RedisCommand, script: Script, on redis: RedisModel) -> RedisReply {
        let arguments = command.arguments
        let keyCount = Int(String(decoding: arguments[2], as: UTF8.self))!
        let keys = Array(arguments[3..<(3 + keyCount)])
        let argv = Array(arguments[(3 + keyCount)...])
        return run(script, keys: keys, argv: argv, on: redis)
    }

    private func push(_ bytes: [UInt8]) {
        bytes.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { lua_pushlstring(state, $0.baseAddress, $0.count) }
        }
    }

    private static func rawCall(_ state: OpaquePointer?) -> Int32 {
        guard let state else { return 0 }
        let scripts = Unmanaged<LuaScripts>.fromOpaque(lua_touserdata(state, shim_lua_upvalueindex(1))!).takeUnretainedValue()
        var arguments: [[UInt8]] = []
        for index in 1...max(1, lua_gettop(state)) where lua_gettop(state) >= index {
            var length = 0
            guard let text = lua_tolstring(state, index, &length) else {
                lua_pushboolean(state, 0)
                scripts.push(Array("ERR Lua redis() command arguments must be strings or integers".utf8))
                return 2
            }
            arguments.append(Array(UnsafeRawBufferPointer(start: text, count: length)))
        }
        let reply = scripts.redis!.command(arguments)
        if case .error(let message) = reply {
            lua_pushboolean(state, 0)
            scripts.push(Array(message.utf8))
            return 2
        }
        lua_pushboolean(state, 1)
        scripts.pushReply(reply)
        return 2
    }

    /// A reply as `redis.call` returns it to Lua.
    private func pushReply(_ reply: RedisReply) {
        switch reply {
        case .status(let text):
            shim_lua_newtable(state)
            push(Array(text.utf8))
            lua_setfield(state, -2, "ok")
        case .bulk(let bytes): push(bytes)
        case .null: lua_pushboolean(state, 0)
        case .integer(let value): lua_pushnumber(state, Double(value))
        case .array(let items):
            lua_createtable(state, Int32(items.count), 0)
            for (index, item) in items.enumerated() {
                pushReply(item)
                lua_rawseti(state, -2, Int32(index + 1))
            }
        case .error(let message): push(Array(message.utf8))
        }
    }

    /// The string at `table[name]`, if there is one.
    private func stringField(_ name: String, of table: Int32) -> String? {
        lua_getfield(state, table, name)
        defer { shim_lua_pop(state, 1) }
        guard lua_type(state, -1) == LUA_TSTRING else { return nil }
        return String(cString: lua_tolstring(state, -1, nil))
    }

    /// The Lua value at `index` as Redis turns a script's result into a reply.
    private func reply(at index: Int32) -> RedisReply {
        switch lua_type(state, index) {
        case LUA_TNUMBER: return .integer(Int64(lua_tonumber(state, index)))
        case LUA_TSTRING:
            var length = 0
            let text = lua_tolstring(state, index, &length)!
            return .bulk(Array(UnsafeRawBufferPointer(start: text, count: length)))
        case LUA_TBOOLEAN: return lua_toboolean(state, index) != 0 ? .integer(1) : .null
        case LUA_TTABLE:
            let table = index < 0 ? lua_gettop(state) + index + 1 : index
            if let message = stringField("err", of: table) { return .error(message) }
            if let message = stringField("ok", of: table) { return .status(message) }
            var items: [RedisReply] = []
            var position: Int32 = 1
            while true {
                lua_rawgeti(state, table, position)
                if shim_lua_isnil(state, -1) != 0 {
                    shim_lua_pop(state, 1)
                    break
                }
                items.append(reply(at: -1))
                shim_lua_pop(state, 1)
                position += 1
            }
            return .array(items)
        default: return .null
        }
    }
}
