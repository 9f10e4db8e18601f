"""What the service learns from its own traffic: capturing live predictions, opt-in and
bounded, off the request path (``capture``), and the monitor that sums them up per
version, with feedback accuracy and label-free estimates (``monitor``). The figures
themselves and the capture folder's layout are ``models.capture``'s.

May import ``models`` and the rest of ``service``; never ``training`` or ``cli``.
"""
