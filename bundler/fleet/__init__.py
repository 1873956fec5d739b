"""The Ansible content ``llmcrate deploy`` runs and ``llmcrate deploy --emit DIR`` writes out.

    site.yml                        the play: serial / max_fail_percentage from extra vars
    roles/llmcrate/defaults/main.yml   the host variables and their defaults
    roles/llmcrate/tasks/main.yml      per host: state, space, copy, verify, install, (re)start, wait, report
    roles/llmcrate/tasks/service.yml   start.sh detached with a PID file (llmcrate_systemd: false)
    haproxy.cfg.j2                  the balancer config ``llmcrate deploy --balancer haproxy`` writes

Data only: the code that uses these files is :mod:`bundler.deploy` and :mod:`bundler.balancer`.
"""
