// Lua 5.1, the version Redis embeds, for the simulation's Redis model: it runs the relay's own
// scripts. Only the test target uses it. Lua's function-like macros, as functions Swift can call.
#include <lua.h>
#include <lualib.h>
#include <lauxlib.h>

static inline void shim_lua_pop(lua_State *L, int n) { lua_pop(L, n); }
static inline void shim_lua_newtable(lua_State *L) { lua_newtable(L); }
static inline int shim_lua_upvalueindex(int i) { return lua_upvalueindex(i); }
static inline void shim_lua_setglobal(lua_State *L, const char *name) { lua_setglobal(L, name); }
static inline void shim_lua_getglobal(lua_State *L, const char *name) { lua_getglobal(L, name); }
static inline int shim_lua_isnil(lua_State *L, int index) { return lua_isnil(L, index); }
static inline int shim_registryindex(void) { return LUA_REGISTRYINDEX; }
