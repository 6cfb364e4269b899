# common/'s modules, declared once, included by the top-level CMakeLists.txt.
#
# Every common/*.c goes into lanyard_common, the static library both daemons link. The client half
# below is also what liblanyard (lib/CMakeLists.txt) compiles again as position-independent code
# with hidden visibility: the Workload API client and what it stands on. It must not need libuv,
# libcurl, libmicrohttpd or SQLite (a client links wolfSSL, nghttp2, protobuf-c and jansson only).
# A module a client module calls belongs here too: liblanyard.so is linked with --no-undefined and
# test_liblanyard/test_install fail otherwise.
set(LANYARD_COMMON_CLIENT_MODULES
  workload_client grpc_client grpc   # the Workload API client over gRPC
  h2conn tls_leaf                    # the HTTP/2+TLS connection core grpc_client.c drives
  bundle x509 x509_build keys der_pem jwt rng spiffeid   # SPIFFE documents and crypto
  util log)

file(GLOB LANYARD_COMMON_SRCS CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/*.c)
set(LANYARD_COMMON_CLIENT_SRCS)
foreach(m ${LANYARD_COMMON_CLIENT_MODULES})
  set(f ${CMAKE_CURRENT_LIST_DIR}/${m}.c)
  # Every name must exist, so that a rename cannot silently drop a module from liblanyard.
  if(NOT EXISTS ${f})
    message(FATAL_ERROR "common/modules.cmake: no common/${m}.c")
  endif()
  list(APPEND LANYARD_COMMON_CLIENT_SRCS ${f})
endforeach()
