/*
 * IAP_INTERNAL: a function shared between the SDK's own files but not part
 * of the SDK. libiaprune.so exports exactly what the installed headers
 * declare (tests/test_example.sh checks it); the link's regex exports every
 * iap_ name, so a function for the library's own use is hidden here instead.
 * Tests that call one link the SDK's objects (libiaprune-sdk.la), where
 * hidden symbols still resolve.
 */
#ifndef IAP_CORE_UTIL_VISIBILITY_H
#define IAP_CORE_UTIL_VISIBILITY_H

#if defined(__GNUC__)
#define IAP_INTERNAL __attribute__((visibility("hidden")))
#else
#define IAP_INTERNAL
#endif

#endif /* IAP_CORE_UTIL_VISIBILITY_H */
