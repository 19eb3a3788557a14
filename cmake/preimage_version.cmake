# Generates <preimage/version.h> into ${PREIMAGE_GENERATED_INCLUDE_DIR}: the project() version and
# the git commit the tree is built from ("unknown" outside a git checkout; "+dirty" is not
# tracked). The commit is read at configure time; moving HEAD (commit, checkout) re-runs CMake
# because the reflog is a configure dependency.
find_package(Git QUIET)
set(PREIMAGE_GIT_COMMIT "unknown")
if(GIT_FOUND)
  execute_process(COMMAND ${GIT_EXECUTABLE} rev-parse --short HEAD
    WORKING_DIRECTORY ${PROJECT_SOURCE_DIR} OUTPUT_VARIABLE _preimage_commit
    OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE _preimage_rc)
  execute_process(COMMAND ${GIT_EXECUTABLE} rev-parse --absolute-git-dir
    WORKING_DIRECTORY ${PROJECT_SOURCE_DIR} OUTPUT_VARIABLE _preimage_gitdir
    OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(_preimage_rc EQUAL 0 AND _preimage_commit)
    set(PREIMAGE_GIT_COMMIT "${_preimage_commit}")
    if(EXISTS "${_preimage_gitdir}/logs/HEAD")
      set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${_preimage_gitdir}/logs/HEAD")
    endif()
  endif()
endif()
configure_file(${CMAKE_CURRENT_LIST_DIR}/version.h.in
  ${PREIMAGE_GENERATED_INCLUDE_DIR}/preimage/version.h @ONLY)
